"""Evaluation reports and `emolens compare`: metrics checked against hand-computed values, and the
bundled model evaluated on a real FER2013 subset through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from emolens.classify import Classifier  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.evaluation.metrics import calibration, classification_metrics, confused_pairs  # noqa: E402
from emolens.evaluation.plots import most_confident_mistakes  # noqa: E402

FILES = ("report.json", "report.md", "confusion_matrix.png", "roc.png", "reliability.png", "mistakes.png")


# ----------------------------------------------------------------------------- metrics
def test_ece_matches_a_hand_computed_value():
    # 10 samples at confidence 0.9 with 9 right -> perfectly calibrated bin; 10 at 0.6 with 3 right -> gap 0.3
    probs = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    y = np.array([0] * 9 + [1] + [0] * 3 + [1] * 7)
    cal = calibration(probs, y, n_bins=15)
    assert cal["ece"] == pytest.approx(0.5 * 0.0 + 0.5 * 0.3)
    filled = [b for b in cal["bins"] if b["n"]]
    assert [(b["n"], b["accuracy"]) for b in filled] == [(10, 0.3), (10, 0.9)]
    assert len(cal["bins"]) == 15


def test_report_has_per_class_table_auc_and_confused_pairs():
    labels = ["a", "b", "c"]
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 2, 0, 0])
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    r = classification_metrics(y, pred, labels, probs)
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and r["per_class"]["b"]["recall"] == 1.0
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [2, 0, 1]]
    assert r["confusion_matrix_normalised"][2] == pytest.approx([2 / 3, 0, 1 / 3], abs=1e-4)
    assert r["most_confused"][0] == {"true": "c", "predicted": "a", "count": 2, "share_of_true": 2 / 3}
    assert r["per_class"]["b"]["auc"] == pytest.approx(11 / 12)  # both positives high, 1 of 6 negatives ties
    assert 0 < r["macro_auc"] < 1 and r["ece"] > 0


def test_auc_is_none_for_a_class_without_samples():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    r = classification_metrics(y, probs.argmax(1), ["x", "y", "z"], probs)
    assert r["per_class"]["z"]["auc"] is None and r["per_class"]["x"]["auc"] == 1.0


def test_confident_mistakes_come_first_and_right_answers_never_appear():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.95, 0.05]])
    y = np.array([0, 0, 0, 1])
    assert most_confident_mistakes(np.zeros((4, 2, 2, 1)), probs, y, ["a", "b"]) == [3, 1, 2]
    assert confused_pairs(np.array([[5, 0], [0, 5]]), ["a", "b"]) == []


# ----------------------------------------------------------------------------- the CLI on real data
@pytest.fixture(scope="module")
def bundled_eval(fer_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "bundled"
    assert main(["evaluate", "default", "--data", str(fer_root), "--split", "val",
                 "--limit-per-class", "12", "--out", str(out)]) == 0
    return out


def test_evaluate_writes_the_full_report(bundled_eval):
    for name in FILES:
        assert (bundled_eval / name).stat().st_size > 0, name
    r = json.loads((bundled_eval / "report.json").read_text())
    assert r["n"] == 84 and r["split"] == "val" and r["source"] == "split-folders"
    assert 0.45 <= r["accuracy"] <= 0.95  # the bundled model: 67.9% on the whole val split
    assert np.array(r["confusion_matrix"]).sum() == 84
    assert all(0.5 < r["per_class"][c]["auc"] <= 1 for c in r["labels"])
    assert 0 <= r["ece"] < 0.3 and len(r["calibration"]["bins"]) == 15
    assert len(r["most_confident_mistakes"]) == 16
    assert r["model_info"]["params"] > 1_000_000 and r["model_info"]["architecture"]
    md = (bundled_eval / "report.md").read_text()
    assert "macro-F1" in md and "Most confused pairs" in md and "![mistakes](mistakes.png)" in md


def test_evaluate_refuses_to_overwrite_a_report_unless_forced(bundled_eval, fer_root, capsys):
    before = (bundled_eval / "report.json").read_text()
    args = ["evaluate", "default", "--data", str(fer_root), "--limit-per-class", "2", "--out", str(bundled_eval)]
    assert main(args) == 2
    assert "already holds a report" in capsys.readouterr().err
    assert (bundled_eval / "report.json").read_text() == before


def test_compare_puts_runs_side_by_side(bundled_eval, fer_root, tmp_path, capsys):
    """The default model against the fast one (`evaluate fast`)."""
    other = tmp_path / "other"
    assert main(["evaluate", "fast", "--data", str(fer_root), "--limit-per-class", "4", "--out", str(other),
                 "--force"]) == 0
    capsys.readouterr()
    assert main(["compare", str(bundled_eval), str(other / "report.json")]) == 0
    table = capsys.readouterr().out
    assert "| accuracy |" in table and "| recall disgust |" in table and "| ECE |" in table
    assert str(bundled_eval) in table and "val (84)" in table and "val (28)" in table
    assert main(["compare", "--json", str(bundled_eval), str(other)]) == 0
    rows = json.loads(capsys.readouterr().out)
    archs = [Classifier(m).meta.architecture for m in ("default", "fast")]
    assert [r["n"] for r in rows] == [84, 28] and [r["architecture"] for r in rows] == archs
    assert rows[1]["size_mb"] < rows[0]["size_mb"] / 3  # int8


@pytest.mark.parametrize("case", ["no-model", "no-split", "foreign-classes", "bad-report", "never-evaluated",
                                  "other-split-only"])
def test_bad_input_gets_one_line_errors(case, fer_root, tmp_path, capsys):
    if case == "no-model":
        args = ["evaluate", str(tmp_path / "nope.onnx"), "--data", str(fer_root)]
        expected = "no such model"
    elif case == "no-split":
        args = ["evaluate", "default", "--data", str(fer_root), "--split", "test"]
        expected = "no split 'test'"
    elif case == "foreign-classes":
        for c in ("happy", "thinking"):
            (tmp_path / "d" / "val" / c).mkdir(parents=True)
            (tmp_path / "d" / "val" / c / "x.png").write_bytes(b"")
        args = ["evaluate", "default", "--data", str(tmp_path / "d")]
        expected = "['thinking'] are not among the model's labels"
    elif case == "never-evaluated":  # a run folder as training leaves it
        run = tmp_path / "run"
        run.mkdir()
        for name in ("config.json", "history.csv", "best.pt", "model.onnx"):
            (run / name).write_bytes(b"x")
        args = ["compare", str(run)]
        expected = f"{run}: no report.json here (run `emolens evaluate {run} --data DATA` first)"
    elif case == "other-split-only":
        (tmp_path / "run" / "eval-val").mkdir(parents=True)
        (tmp_path / "run" / "eval-val" / "report.json").write_text('{"split": "val", "accuracy": 1, "per_class": {}}')
        args = ["compare", "--split", "test", str(tmp_path / "run")]
        expected = "no evaluation of the test split here (run `emolens evaluate"
    else:
        (tmp_path / "report.json").write_text('{"hello": 1}')
        args = ["compare", str(tmp_path / "report.json")]
        expected = "not a report.json written by `emolens evaluate`"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_colour_models_see_colour_images_in_the_right_channel_order(tmp_path):
    """A model that answers "red" or "blue" from the mean of its R and B inputs scores 100% on pure
    red/blue photos only if evaluate hands it channels in the order inference uses."""
    torch = pytest.importorskip("torch")
    import cv2

    from emolens.modelmeta import ModelMeta
    from emolens.training.export import export_onnx

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[4.0, 0, 0], [0, 0, 4.0]]))  # RGB input: R -> "red", B -> "blue"
        net[2].bias.zero_()
    model = export_onnx(net, ModelMeta(labels=["red", "blue"], input_size=16, channels=3), tmp_path / "c.onnx")
    for name, bgr in (("red", (0, 0, 220)), ("blue", (220, 0, 0))):
        d = tmp_path / "data" / "test" / name
        d.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(d / f"{i}.png"), np.full((40 + i, 30, 3), bgr, np.uint8))
    assert main(["evaluate", str(model), "--data", str(tmp_path / "data"), "--split", "test",
                 "--out", str(tmp_path / "ev")]) == 0
    r = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert r["labels"] == ["red", "blue"] and r["n"] == 6 and r["accuracy"] == 1.0


# ----------------------------------------------------------------------------- end to end: --detect
WILD = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "wild"


@pytest.fixture(scope="module")
def picture_set(tmp_path_factory, photos_dir):
    """A split of real pictures: two smiling portraits (happy), one sad-labelled portrait and a blank
    picture in which no face can be found (also labelled sad)."""
    import cv2

    root = tmp_path_factory.mktemp("pictures")
    for cls, names in {"happy": ["portrait_obama.jpg", "portrait_biden.jpg"], "sad": ["portrait_obama2.jpg"]}.items():
        (root / "val" / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photos_dir / n, root / "val" / cls / n)
    cv2.imwrite(str(root / "val" / "sad" / "blank.png"), np.full((200, 300, 3), 200, np.uint8))
    return root


def test_evaluate_detect_scores_the_largest_face_and_counts_misses_as_wrong(picture_set, tmp_path, capsys):
    out = tmp_path / "e2e"
    assert main(["evaluate", "default", "--data", str(picture_set), "--detect", "--out", str(out)]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["n"] == 4 and r["detection"]["found"] == 3 and r["detection"]["total"] == 4
    assert r["detection"]["detector"] == "centerface"
    assert [Path(f).name for f in r["detection"]["missed"]] == ["blank.png"]
    assert r["per_class"]["happy"]["recall"] >= 0.5  # the clear smile (portrait_obama) is read as happy
    assert r["per_class"]["sad"]["recall"] <= 0.5  # the blank picture counts as wrong
    assert r["accuracy"] <= 0.75
    # macro averages run over the two classes present, not all seven
    assert r["classes_present"] == ["happy", "sad"]
    f1 = [r["per_class"][c]["f1"] for c in ("happy", "sad")]
    assert r["macro_f1"] == pytest.approx(sum(f1) / 2)
    md = (out / "report.md").read_text()
    assert "3 / 4" in md and "over the 2 classes present" in md


def test_evaluate_detect_with_haar_and_no_align(picture_set, tmp_path):
    out = tmp_path / "haar"
    assert main(["evaluate", "default", "--data", str(picture_set), "--detect", "--detector", "haar",
                 "--no-align", "--out", str(out)]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["detection"]["detector"] == "haar" and r["detection"]["align"] == "none"
    assert r["detection"]["found"] == 3


def test_classes_the_model_lacks_are_an_error_unless_skipped(picture_set, tmp_path, capsys):
    extra = tmp_path / "ck"
    shutil.copytree(picture_set, extra)
    (extra / "val" / "contempt").mkdir()
    shutil.copy(extra / "val" / "happy" / "portrait_obama.jpg", extra / "val" / "contempt" / "x.jpg")
    for flags in (["--detect"], []):
        assert main(["evaluate", "default", "--data", str(extra), *flags, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert "contempt" in err and "--skip-unknown" in err and "Traceback" not in err
    assert main(["evaluate", "default", "--data", str(extra), "--detect", "--skip-unknown",
                 "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["n"] == 4


def test_evaluate_detect_refuses_a_csv(tmp_path, capsys):
    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n3," + " ".join(["128"] * 2304) + ",PublicTest\n")
    assert main(["evaluate", "default", "--data", str(csv), "--split", "val", "--detect",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--detect needs pictures" in capsys.readouterr().err


@pytest.mark.skipif(not WILD.is_dir(), reason="wild val set not found")
def test_wild_pictures_end_to_end_beats_haar_on_found_faces():
    from emolens.evaluation.metrics import evaluate_model

    learned = evaluate_model(None, WILD, "val", detect=True, limit_per_class=12)
    haar = evaluate_model(None, WILD, "val", detect=True, detector="haar", limit_per_class=12)
    n = learned.report["n"]
    assert n == haar.report["n"] == 6 * 12 + 11  # fear has 11 pictures
    assert learned.report["detection"]["found"] >= 0.97 * n
    assert learned.report["detection"]["found"] > haar.report["detection"]["found"]


def test_evaluate_shows_progress_on_a_terminal_only(fer_root, tmp_path):
    import sys

    from terminal import run_with_terminal_stderr

    cmd = [sys.executable, "-m", "emolens", "evaluate", "default", "--data", str(fer_root), "--split", "val",
           "--limit-per-class", "3"]
    code, out, seen = run_with_terminal_stderr([*cmd, "--out", str(tmp_path / "a")], tmp_path)
    assert code == 0 and "accuracy" in out.lower()
    assert "image 21/21 100%" in seen and "images/s" in seen and "ETA" in seen, seen
    code, _, seen = run_with_terminal_stderr([*cmd, "--out", str(tmp_path / "b"), "--quiet"], tmp_path)
    assert code == 0 and "images/s" not in seen


def test_evaluate_is_one_call_from_python_and_refuses_an_old_report_before_the_slow_part(fer_root, tmp_path):
    """`emolens evaluate` from Python: the scores and the report's files in one call; an earlier report in the folder
    is refused before anything is scored (here the data does not even exist, and FileExistsError still comes
    first), and replaced with force."""
    from emolens.evaluation import evaluate

    out = tmp_path / "report"
    ev = evaluate("fast", fer_root, "val", out=out, limit_per_class=3)
    assert ev.report["n"] == 21 and sorted(p.name for p in ev.written) == sorted(FILES)
    assert json.loads((out / "report.json").read_text())["accuracy"] == ev.report["accuracy"]
    with pytest.raises(FileExistsError, match="already holds a report"):
        evaluate("fast", tmp_path / "no-such-data", "val", out=out)
    assert evaluate("fast", fer_root, "val", out=out, force=True, limit_per_class=2).report["n"] == 14
    assert evaluate("fast", fer_root, "val", out=None, limit_per_class=1).written == []
