"""Export: ONNX-vs-PyTorch parity and int8 quantization, and the binary happy/sad road end to end on
real FER2013 faces in flat class folders: train -> evaluate -> export (+int8) -> predict."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from emolens.classify import Classifier  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.training.data import MANIFEST_NAME, load_folder_split  # noqa: E402
from emolens.training.export import load_checkpoint, parity  # noqa: E402

PER_CLASS = 60
# One float vgg_s net with emolens metadata (the default model of before, kept as a member of today's ensembles):
# the bundled models are int8 ensembles, which neither quantize again nor stand for a single exported net.
VGG_S = Path(__file__).resolve().parents[1] / "models" / "members" / "emolens-fer-vgg-s.onnx"


@pytest.fixture(scope="module")
def flat_happy_sad(fer_root, tmp_path_factory):
    """A user's two folders of faces: data/happy/*.jpg, data/sad/*.jpg (copies of real FER2013 images)."""
    root = tmp_path_factory.mktemp("happy_sad") / "data"
    for cls in ("happy", "sad"):
        (root / cls).mkdir(parents=True)
        for f in sorted((fer_root / "train" / cls).iterdir())[:PER_CLASS]:
            shutil.copy(f, root / cls / f.name)
    return root


@pytest.fixture(scope="module")
def binary_run(flat_happy_sad, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "happy_sad"
    code = main(["train", "--data", str(flat_happy_sad), "--out", str(run), "--epochs", "2", "--batch-size", "32"])
    assert code == 0
    return run


@pytest.mark.slow
def test_binary_happy_sad_end_to_end(binary_run, flat_happy_sad, tmp_path, capsys):
    # the split drawn at training time is in the run folder ...
    manifest = json.loads((binary_run / MANIFEST_NAME).read_text())
    assert manifest["kind"] == "class-folders" and set(manifest["items"]) == {"train", "val", "test"}
    test_files = {str(flat_happy_sad / f) for f, _ in manifest["items"]["test"]}
    assert len(test_files) == 18  # 15% of 120, stratified
    capsys.readouterr()

    # ... and evaluate reuses it: exactly the held-out test images, none of the training ones
    assert main(["evaluate", str(binary_run), "--data", str(flat_happy_sad), "--split", "test"]) == 0
    report = json.loads((binary_run / "eval-test" / "report.json").read_text())
    assert report["labels"] == ["happy", "sad"] and report["n"] == 18
    mistakes = {m["file"] for m in report["most_confident_mistakes"]}
    assert mistakes <= test_files
    assert report["per_class"]["happy"]["support"] == 9 and report["per_class"]["sad"]["support"] == 9

    # export: parity against the PyTorch checkpoint is measured and printed
    capsys.readouterr()
    assert main(["export", str(binary_run), "--out", str(tmp_path / "again.onnx")]) == 0
    out = capsys.readouterr().out
    diff = float(re.search(r"parity: max \|p_onnx - p_torch\| = (\S+) over 16 validation images", out).group(1))
    assert diff < 1e-4

    # int8 next to the run's model (which already exists: it is reused, not replaced)
    before = (binary_run / "model.onnx").read_bytes()
    assert main(["export", str(binary_run), "--int8", "--val-per-class", "20"]) == 0
    assert (binary_run / "model.onnx").read_bytes() == before
    res = json.loads((binary_run / "model.int8.json").read_text())
    assert res["mode"] == "static" and res["val_images"] == 18 and res["calibration_images"] == 84
    assert res["size_mb_int8"] < res["size_mb_fp32"] / 2
    assert res["max_prob_diff"] < 0.25 and res["agreement"] >= 0.75

    # both models predict the two labels through the ordinary CLI
    img = sorted(test_files)[0]
    for model in ("model.onnx", "model.int8.onnx"):
        capsys.readouterr()
        assert main(["predict", "--no-detect", "--json", "--model", str(binary_run / model), img]) == 0
        (result,) = json.loads(capsys.readouterr().out)
        assert set(result["faces"][0]["scores"]) == {"happy", "sad"}


@pytest.mark.slow
def test_parity_detects_a_model_that_differs(binary_run, flat_happy_sad):
    model, _ = load_checkpoint(binary_run / "best.pt")
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 1), dtype=np.uint8)
    assert parity(model, binary_run / "model.onnx", images) < 1e-4
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert parity(model, binary_run / "model.onnx", images) > 1e-3


@pytest.mark.slow
def test_int8_of_the_bundled_model_keeps_its_accuracy(fer_root, tmp_path, capsys):
    out = tmp_path / "bundled.int8.onnx"
    args = ["export", str(VGG_S), "--int8", "--data", str(fer_root), "--out", str(out),
            "--calib-per-class", "10", "--val-per-class", "15"]
    assert main(args) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["val_images"] == 105 and res["calibration_images"] == 70
    # 7-bit weights: with 8-bit ones, ONNX Runtime's int8 kernels on CPUs without VNNI (AVX2 only)
    # overflow, and the copy agreed with the float model on only 88% of these faces (max diff 0.6)
    assert abs(res["accuracy_change"]) <= 0.04 and res["agreement"] >= 0.95 and res["max_prob_diff"] < 0.25
    assert Classifier(out).labels == Classifier(VGG_S).labels
    assert "1 thread, ms per face" in capsys.readouterr().out
    assert main(args) == 2  # the second time it refuses to replace the file
    assert "already exists" in capsys.readouterr().err

    # scripts/dequantize_qdq.py turns the int8 file back into a float model that means the same
    # (how members whose float source is gone were re-quantized); it never replaces a file
    script = Path(__file__).resolve().parents[1] / "scripts" / "dequantize_qdq.py"
    back = tmp_path / "back.onnx"
    run = [sys.executable, str(script), str(out), str(back)]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    faces = load_folder_split(fer_root, "val", classes=Classifier(VGG_S).labels, limit_per_class=8).images
    p8, pf = Classifier(out).predict_proba(list(faces)), Classifier(back).predict_proba(list(faces))
    p32 = Classifier(VGG_S).predict_proba(list(faces))
    assert Classifier(back).meta.labels == Classifier(VGG_S).labels
    assert np.abs(pf - p32).max() < 0.1 and (pf.argmax(1) == p32.argmax(1)).mean() >= 0.95
    assert np.abs(pf - p8).max() < 0.25
    again = subprocess.run(run, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("case", ["onnx-without-int8", "no-data", "no-checkpoint"])
def test_export_bad_input(case, tmp_path, capsys):
    if case == "onnx-without-int8":
        args, expected = ["export", str(VGG_S)], "already an ONNX model; pass --int8"
    elif case == "no-data":
        model = tmp_path / "m.onnx"
        shutil.copy(VGG_S, model)
        args, expected = ["export", str(model), "--int8"], "give --data"
    else:
        args, expected = ["export", str(tmp_path)], "no checkpoint"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_metrics_and_name_go_into_a_copy_of_an_onnx_model(tmp_path, capsys):
    """The last step of shipping a model: store the evaluation of the final (quantized, calibrated)
    model in a copy of it; the input stays as it was."""
    src = VGG_S
    before = src.read_bytes()
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"split": "val", "accuracy": 0.70123, "macro_f1": 0.6789,
                                  "weighted_f1": 0.7, "ece": 0.0211}))
    out = tmp_path / "shipped.onnx"
    assert main(["export", str(src), "--metrics", str(report), "--name", "my-model", "--out", str(out)]) == 0
    meta = Classifier(out).meta
    assert meta.name == "my-model"
    assert meta.metrics["val_accuracy"] == 0.7012 and meta.metrics["val_ece"] == 0.0211
    assert meta.labels == Classifier(src).meta.labels and src.read_bytes() == before
    capsys.readouterr()
    cases = [
        (["--metrics", str(report)], "give --out"),
        (["--metrics", str(report), "--out", str(out)], "already exists; pass --force"),
        (["--metrics", str(report), "--out", str(src), "--force"], "must differ from the input"),
        (["--metrics", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x.onnx")], "not a report.json"),
        (["--name", "x", "--tta-hflip", "--out", str(tmp_path / "y.onnx")], "not on an .onnx model"),
    ]
    for extra, expected in cases:
        assert main(["export", str(src), *extra]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert src.read_bytes() == before and not (tmp_path / "x.onnx").exists()


@pytest.fixture(scope="module")
def second_run(flat_happy_sad, tmp_path_factory):
    """Another short run on the same data with another seed: a second ensemble member."""
    run = tmp_path_factory.mktemp("runs") / "happy_sad_seed1"
    assert main(["train", "--data", str(flat_happy_sad), "--out", str(run), "--epochs", "2", "--batch-size", "32",
                 "--seed", "1", "--model", "seed003_cnn"]) == 0
    return run


@pytest.mark.slow
def test_ensemble_of_two_runs_is_one_model_with_the_mean_probability(binary_run, second_run, flat_happy_sad,
                                                                     tmp_path, capsys):
    out = tmp_path / "ensemble.onnx"
    capsys.readouterr()
    assert main(["export", str(binary_run), str(second_run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    diff = float(re.search(r"parity: max \|p_onnx - p_torch\| = (\S+)", text).group(1))
    assert diff < 1e-4
    ens = Classifier(out)
    assert ens.labels == ["happy", "sad"]
    assert ens.meta.architecture == "ensemble(vgg_s+seed003_cnn)"
    # its probabilities are the mean of the two members' (each run's own exported model)
    images = [np.asarray(img) for img in np.random.default_rng(1).integers(0, 256, (6, 48, 48), dtype=np.uint8)]
    a, b = Classifier(binary_run / "model.onnx"), Classifier(second_run / "model.onnx")
    expected = (a.predict_proba(images) + b.predict_proba(images)) / 2
    np.testing.assert_allclose(ens.predict_proba(images), expected, atol=1e-5)


def test_ensemble_needs_out_and_matching_members(binary_run, tmp_path, capsys):
    assert main(["export", str(binary_run), str(binary_run)]) == 2
    assert "needs --out" in capsys.readouterr().err
    assert main(["export", str(binary_run), str(VGG_S), "--out", str(tmp_path / "e.onnx")]) == 2
    assert "an ensemble is made of checkpoints" in capsys.readouterr().err
    # a member trained on other labels
    ck = torch.load(binary_run / "best.pt", weights_only=False)
    ck["classes"] = ["happy", "surprise"]
    torch.save(ck, tmp_path / "other.pt")
    assert main(["export", str(binary_run), str(tmp_path / "other.pt"), "--out", str(tmp_path / "e.onnx")]) == 2
    err = capsys.readouterr().err
    assert "labels" in err and "must share" in err and "Traceback" not in err
    assert not (tmp_path / "e.onnx").exists()


def test_ensemble_of_onnx_models_averages_their_calibrated_probabilities(fer_root, tmp_path, capsys,
                                                                         with_temperature):
    """Only .onnx files left (the runs are gone): the ensemble is still one model of the mean probability,
    each member softened by its own temperature and shifted by its own bias per class (`calibrate --class-bias`)."""
    warm = with_temperature(VGG_S, tmp_path / "t2.onnx", 2.0, bias=[0.5, -1.0, 0.0, 0.3, 0.0, 0.2, 0.0])
    out = tmp_path / "ens.onnx"
    assert main(["export", str(VGG_S), str(warm), "--out", str(out), "--name", "pair"]) == 0
    assert "ensemble of 2 models" in capsys.readouterr().out
    ens, a, b = Classifier(out), Classifier(VGG_S), Classifier(warm)
    assert ens.labels == a.labels and ens.meta.name == "pair" and ens.meta.temperature == 1.0
    assert ens.meta.architecture == "ensemble(vgg_s+vgg_s)"
    assert ens.meta.tta_hflip == a.meta.tta_hflip and ens.meta.tta_scales == a.meta.tta_scales
    faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((fer_root / "val" / "happy").iterdir())[:8]]
    expected = (a.predict_proba(faces) + b.predict_proba(faces)) / 2
    np.testing.assert_allclose(ens.predict_proba(faces), expected, atol=1e-5)
    assert not np.allclose(a.predict_proba(faces), b.predict_proba(faces), atol=1e-3)  # the temperature mattered


def test_ensemble_of_onnx_models_bad_input(binary_run, tmp_path, capsys):
    bundled = str(VGG_S)
    out = tmp_path / "ens.onnx"
    assert main(["export", bundled, bundled]) == 2
    assert "needs --out" in capsys.readouterr().err
    assert main(["export", bundled, str(tmp_path / "missing.onnx"), "--out", str(out)]) == 2
    assert "missing.onnx: no such model" in capsys.readouterr().err
    assert main(["export", bundled, str(binary_run / "model.onnx"), "--out", str(out)]) == 2  # happy/sad vs 7 classes
    err = capsys.readouterr().err
    assert "labels" in err and "must share" in err and "Traceback" not in err
    assert not out.exists()
    out.write_bytes(b"mine")
    assert main(["export", bundled, bundled, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"mine"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["export", bundled, str(bad), "--out", str(tmp_path / "e2.onnx")]) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "e2.onnx").exists()


def test_ensemble_of_onnx_models_takes_the_views_asked_for(tmp_path, capsys):
    bundled = str(VGG_S)
    assert Classifier(bundled).meta.tta_hflip  # the members average mirror images
    out = tmp_path / "one_view.onnx"
    assert main(["export", bundled, bundled, "--tta-scales", "1.0", "--out", str(out)]) == 0
    assert not Classifier(out).meta.tta_hflip and Classifier(out).meta.tta_scales == [1.0]
    assert main(["export", bundled, bundled, "--tta-hflip", "--out", str(out), "--force"]) == 0
    assert Classifier(out).meta.tta_hflip and Classifier(out).meta.tta_scales == [1.0]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"split": "val", "accuracy": 0.7012, "macro_f1": 0.69,
                                  "weighted_f1": 0.7, "ece": 0.0211}))
    assert main(["export", bundled, bundled, "--metrics", str(report), "--out", str(out), "--force"]) == 0
    assert Classifier(out).meta.metrics["val_accuracy"] == 0.7012
    fresh = tmp_path / "fresh.onnx"  # an unreadable report is refused before anything is written
    assert main(["export", bundled, bundled, "--metrics", str(tmp_path / "nope.json"), "--out", str(fresh)]) == 2
    assert "not a report.json" in capsys.readouterr().err and not fresh.exists()


# ----------------------------------------------------------------------------- from Python, one call each
def test_the_four_export_jobs_are_one_call_each_from_python(binary_run, flat_happy_sad, tmp_path):
    """`emolens export`'s four jobs from Python, with the command's checks as one-line ExportErrors and the input
    models never changed."""
    from emolens.training.export_jobs import ExportError, ensemble_models, export_run, quantize_onnx, restamp_model

    done = export_run(binary_run, tmp_path / "m.onnx", name="mine")
    assert not done.reused and done.parity[0] < 1e-4 and done.parity[2] == "validation images"
    assert Classifier(done.onnx).meta.name == "mine" and done.int8 is None
    before = done.onnx.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        export_run(binary_run, done.onnx)
    named = restamp_model(done.onnx, tmp_path / "named.onnx", name="renamed", metrics={"val_accuracy": 0.5})
    assert Classifier(named).meta.name == "renamed" and Classifier(named).meta.metrics["val_accuracy"] == 0.5
    ens = ensemble_models([done.onnx, named], tmp_path / "ens.onnx", name="both")
    assert Classifier(ens).labels == ["happy", "sad"]
    int8, report = quantize_onnx(done.onnx, data=flat_happy_sad, calib_per_class=8, val_per_class=8)
    assert int8 == tmp_path / "m.int8.onnx" and int8.is_file() and report["val_images"] == 16
    assert done.onnx.read_bytes() == before
    for call, message in [
        (lambda: restamp_model(done.onnx, tmp_path / "x.onnx"), "already an ONNX model"),
        (lambda: restamp_model(done.onnx, done.onnx, name="x"), "must differ from the input model"),
        (lambda: ensemble_models([done.onnx, named], named), "must differ from the member models"),
        (lambda: ensemble_models([done.onnx, binary_run], tmp_path / "y.onnx"), "not both"),
        (lambda: quantize_onnx(done.onnx, int8), "already exists"),
        (lambda: quantize_onnx(tmp_path / "none.onnx"), "no such model"),
        (lambda: export_run([binary_run, binary_run]), "needs --out"),
        (lambda: export_run(tmp_path), "no checkpoint"),
        (lambda: export_run(binary_run, tmp_path / "z.onnx", metrics=tmp_path / "nothing.json"), "not a report.json"),
    ]:
        with pytest.raises(ExportError, match=message):
            call()
