"""Temperature scaling (and a bias per class): the fit recovers a known temperature and a known class shift,
`emolens calibrate` writes a calibrated copy whose confidences `emolens evaluate` confirms, and never touches
the input."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("onnx")

from emolens.classify import Classifier, default_model_path, softmax_views  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.evaluation.calibration import cross_fitted_ece, fit_temperature, fit_temperature_bias  # noqa: E402
from emolens.evaluation.metrics import calibration, evaluate_model  # noqa: E402


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def overconfident(n: int = 6000, k: int = 7, factor: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z) (so z is calibrated), and a model that reports z × factor (overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = softmax_views(z[:, None, :])
    y = np.array([rng.choice(k, p=row / row.sum()) for row in p.astype(np.float64)])
    return z * factor, y


def test_fit_recovers_the_temperature_that_calibrates():
    z, y = overconfident(factor=2.5)
    t = fit_temperature(z[:, None, :], y)
    assert t == pytest.approx(2.5, rel=0.1)
    before = calibration(softmax_views(z[:, None, :]), y)["ece"]
    after = calibration(softmax_views(z[:, None, :], t), y)["ece"]
    assert before > 0.1 and after < 0.03
    assert cross_fitted_ece(z[:, None, :], y) < 0.04  # fitted on one half, scored on the other


def test_class_bias_undoes_a_shift_a_temperature_cannot():
    """A model that over-predicts one class (its logit raised by 3, as class weights do) and is
    overconfident (× 1.5): the temperature alone leaves it miscalibrated; T plus a bias per class finds both."""
    z, y = overconfident(factor=1.5, seed=1)
    shifted = z + np.array([0, 3.0, 0, 0, 0, 0, 0])
    t_only = fit_temperature(shifted[:, None, :], y)
    t, b = fit_temperature_bias(shifted[:, None, :], y)
    assert t == pytest.approx(1.5, rel=0.1) and abs(b.sum()) < 1e-9
    assert (b - b.mean())[1] - np.delete(b, 1).mean() == pytest.approx(-3.0 / 1.5, abs=0.25)  # the shift, over T
    ece_t = calibration(softmax_views(shifted[:, None, :], t_only), y)["ece"]
    ece_tb = calibration(softmax_views(shifted[:, None, :], t, b), y)["ece"]
    assert ece_tb < 0.03 < ece_t
    assert cross_fitted_ece(shifted[:, None, :], y, class_bias=True) < 0.04


def test_a_model_with_a_bias_of_the_wrong_length_is_refused(tmp_path, with_temperature):
    from emolens.classify import ModelError

    bad = with_temperature(default_model_path(), tmp_path / "bad.onnx", 1.0)
    import onnx

    proto = onnx.load(str(bad))
    for p in proto.metadata_props:
        if p.key == "emolens":
            d = json.loads(p.value)
            d["logit_bias"] = [0.1, 0.2]
            p.value = json.dumps(d)
    onnx.save(proto, str(bad))
    with pytest.raises(ModelError, match="logit_bias"):
        Classifier(bad)


def test_views_are_averaged_after_the_softmax():
    z = np.array([[[4.0, 0.0], [0.0, 4.0]]])  # two views that disagree completely
    assert softmax_views(z).tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError, match="no samples"):
        fit_temperature(z[:0], np.array([], int))


def test_the_bundled_models_ship_calibrated():
    """The bundled models carry the temperature `emolens calibrate` fitted on the whole val split (no class
    bias: it would cost disgust recall and wild accuracy, see the model card), and their metadata states the val
    figures measured with it: ECE at most 0.035 on FER2013 val."""
    for name in ("default", "fast"):
        meta = Classifier(name).meta
        assert 0.5 < meta.temperature < 1.5 and meta.logit_bias is None, name
        m = meta.metrics
        assert m["val_ece"] <= 0.035 and m["val_ece_cross_fitted"] <= 0.035 and m["val_accuracy"] > 0.66, name


@pytest.mark.slow
def test_calibrate_command_writes_a_calibrated_copy_and_evaluate_agrees(fer_root, tmp_path, capsys, with_temperature):
    raw = with_temperature(default_model_path(), tmp_path / "raw.onnx", 1.0)  # the bundled model, uncalibrated
    before = sha(raw)
    out = tmp_path / "cal.onnx"
    args = ["calibrate", str(raw), "--data", str(fer_root), "--limit-per-class", "60", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "temperature 1 ->" in text and f"wrote {out}" in text
    assert sha(raw) == before  # the input model is never changed
    meta = Classifier(out).meta
    assert meta.temperature != 1.0 and 0.3 < meta.temperature < 3
    # fitted on a sample: the stored whole-split figures stay, less the ECE the new temperature made stale
    assert meta.metrics == {k: v for k, v in Classifier(raw).meta.metrics.items() if "ece" not in k}
    assert "val_accuracy" in meta.metrics

    # what calibrate reports is what evaluate measures with the calibrated model (same views, same data)
    ece_line = next(line for line in text.splitlines() if "ECE (val)" in line)
    ece_after = float(ece_line.split("->")[1].split()[0])
    ev = evaluate_model(out, fer_root, "val", limit_per_class=60)
    assert ev.report["ece"] == pytest.approx(ece_after, abs=2e-4)
    assert ev.report["ece"] < evaluate_model(raw, fer_root, "val", limit_per_class=60).report["ece"]

    # never overwrites; the model itself cannot be the output; bad input is one line
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["calibrate", str(out), "--data", str(fer_root), "--out", str(out), "--force"]) == 2
    assert "the model itself" in capsys.readouterr().err
    assert main(["calibrate", "default", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    assert main(["calibrate", str(tmp_path / "missing.onnx"), "--data", str(fer_root)]) == 2
    assert "no such model" in capsys.readouterr().err


def test_a_copy_calibrated_on_the_whole_split_states_what_it_scores(fer_root, tmp_path, with_temperature):
    """Calibrating can move a face's top-1 (the views are averaged after the softmax), so the copy's stored
    accuracy, F1 and ECE are measured with its new temperature: what `emolens evaluate` then reports."""
    import shutil

    from emolens.evaluation.calibration import calibrate_model

    data = tmp_path / "faces"
    for cls in sorted((fer_root / "val").iterdir()):
        (data / "val" / cls.name).mkdir(parents=True)
        for img in sorted(cls.iterdir())[:12]:
            shutil.copy(img, data / "val" / cls.name / img.name)
    raw = with_temperature(default_model_path(), tmp_path / "raw.onnx", 1.0)
    r = calibrate_model(raw, data, "val", out=tmp_path / "cal.onnx")
    m = Classifier(tmp_path / "cal.onnx").meta.metrics
    ev = evaluate_model(tmp_path / "cal.onnx", data, "val").report
    assert m["val_accuracy"] == pytest.approx(ev["accuracy"], abs=1e-4)
    assert m["val_accuracy"] == pytest.approx(r["accuracy_after"], abs=1e-4)
    assert m["val_macro_f1"] == pytest.approx(ev["macro_f1"], abs=1e-4)
    assert m["val_ece"] == pytest.approx(ev["ece"], abs=2e-4)
    assert m["val_ece_cross_fitted"] == round(r["ece_cross_fitted"], 4)


def test_calibrated_model_keeps_everything_else(fer_root, tmp_path):
    from emolens.evaluation.calibration import calibrate_model

    r = calibrate_model(None, fer_root, "val", out=tmp_path / "c.onnx", limit_per_class=20)
    a, b = Classifier(None).meta, Classifier(tmp_path / "c.onnx").meta
    changed = {"temperature": b.temperature, "logit_bias": None, "metrics": b.metrics}  # a refit replaces the bias
    assert json.loads(a.to_json()) | changed == json.loads(b.to_json())
    assert r["n"] == 7 * 20 and r["temperature"] == pytest.approx(b.temperature, abs=1e-4)


def test_calibrating_the_fast_bundled_model_writes_into_the_working_folder(fer_root, tmp_path, monkeypatch, capsys):
    """`emolens calibrate fast` without --out: the copy lands in the current folder, as for `default`,
    never next to the model inside the installed package."""
    from emolens.classify import bundled_model_path

    assets = sorted(bundled_model_path("fast").parent.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "fast", "--data", str(fer_root), "--limit-per-class", "5"]) == 0
    copy = tmp_path / bundled_model_path("fast").name.replace(".onnx", ".calibrated.onnx")
    assert copy.is_file()
    assert sorted(bundled_model_path("fast").parent.iterdir()) == assets
    assert Classifier(copy).meta.name == Classifier("fast").meta.name


def test_calibrate_with_class_bias_writes_the_biases_and_predicts_with_them(fer_root, tmp_path, capsys):
    """`emolens calibrate --class-bias`: the copy holds T and one centred bias per label, prints them by name,
    and the copy's predictions are softmax(z / T + b) of the same logits."""
    out = tmp_path / "cb.onnx"
    assert main(["calibrate", "fast", "--data", str(fer_root), "--limit-per-class", "15", "--class-bias",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bias per class: angry " in text and f"wrote {out}" in text
    src, cal = Classifier("fast"), Classifier(out)
    b = cal.meta.logit_bias
    assert b is not None and len(b) == len(cal.labels) and abs(sum(b)) < 1e-3 and any(abs(v) > 1e-3 for v in b)
    faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((fer_root / "val" / "sad").iterdir())[:6]]
    z = src.view_logits(src.preprocess(faces))
    np.testing.assert_allclose(cal.predict_proba(faces), softmax_views(z, cal.meta.temperature, b), atol=1e-5)
