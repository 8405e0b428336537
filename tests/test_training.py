"""The training road on real FER2013 images: train -> export -> ONNX parity -> evaluate -> predict.

One short run on a binary subset (happy vs. surprise, as a user's own two-folder dataset would be)
is shared by the tests of this module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.classify import Classifier  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.training.data import load_folder_split  # noqa: E402
from emolens.training.export import export_checkpoint, load_checkpoint  # noqa: E402
from emolens.training.loop import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.slow

CLASSES = ("happy", "surprise")


@pytest.fixture(scope="module")
def binary_data(fer_root, tmp_path_factory):
    """A user-style dataset: <root>/{train,val}/{happy,surprise}/*.jpg (symlinks to the shared images)."""
    root = tmp_path_factory.mktemp("happy_surprise")
    for split, n in (("train", 400), ("val", 100)):
        for cls in CLASSES:
            d = root / split / cls
            d.mkdir(parents=True)
            for f in sorted((fer_root / split / cls).iterdir())[:n]:
                (d / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def run_dir(binary_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "binary"
    cfg = TrainConfig(data=str(binary_data), out=str(out), model="vgg_s", epochs=8, batch_size=64, lr=2e-3, seed=0)
    return train(cfg)


def test_short_training_beats_chance_by_a_wide_margin(run_dir):
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc")
    best = max(float(r.split(",")[4]) for r in rows[1:])
    assert best >= 0.75, f"best val accuracy {best:.3f} on a balanced binary task (chance 0.5)"
    for name in ("config.json", "train.log", "best.pt", "last.pt", "model.onnx"):
        assert (run_dir / name).is_file(), name


def test_onnx_output_equals_pytorch_output(run_dir, binary_data):
    model, ck = load_checkpoint(run_dir / "best.pt")
    clf = Classifier(run_dir / "model.onnx")
    assert clf.labels == list(CLASSES)
    images = load_folder_split(binary_data, "val", classes=list(CLASSES), limit_per_class=16).images
    x = clf.preprocess(list(images))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = clf.logits(x)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_evaluate_command_reports_accuracy_and_confusion_matrix(run_dir, binary_data, tmp_path, capsys):
    assert main(["evaluate", str(run_dir), "--data", str(binary_data), "--split", "val", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 200 and report["labels"] == list(CLASSES)
    assert np.array(report["confusion_matrix"]).sum() == 200
    assert report["accuracy"] >= 0.75
    assert "macro-F1" in capsys.readouterr().out


def test_trained_binary_model_predicts_through_the_cli(run_dir, binary_data, capsys):
    img = sorted((binary_data / "val" / "happy").iterdir())[0]
    assert main(["predict", "--no-detect", "--json", "--model", str(run_dir / "model.onnx"), str(img)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert set(result["faces"][0]["scores"]) == set(CLASSES)


def test_export_refuses_to_overwrite_and_resume_continues(run_dir, tmp_path, capsys):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"precious")
    assert main(["export", str(run_dir), "--out", str(target)]) == 2
    assert target.read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().err
    export_checkpoint(run_dir / "best.pt", tmp_path / "fresh.onnx")
    assert Classifier(tmp_path / "fresh.onnx").meta.architecture == "vgg_s"


def test_train_refuses_an_existing_run_folder(run_dir, binary_data, capsys):
    code = main(["train", "--data", str(binary_data), "--out", str(run_dir), "--epochs", "1"])
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err


def test_resume_after_interruption(binary_data, tmp_path):
    out = tmp_path / "resumable"
    cfg = TrainConfig(data=str(binary_data), out=str(out), epochs=1, limit_per_class=40, batch_size=32)
    train(cfg)
    cfg.epochs = 2
    train(cfg, resume=True)
    rows = (out / "history.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]
    assert "resumed after epoch 1" in (out / "train.log").read_text()
