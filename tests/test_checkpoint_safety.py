"""Checkpoints cannot run code: emolens writes them as tensors and plain values and reads every user-given one
with PyTorch's weights-only unpickler. A crafted checkpoint whose unpickling would create a file is refused
by every road that reads checkpoints (export, --init, --resume, Grad-CAM), and the file never appears."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from emolens.cli import main  # noqa: E402
from emolens.training.checkpoint import CheckpointError, read_checkpoint  # noqa: E402
from emolens.training.loop import TrainConfig, train  # noqa: E402

LABELS = ["happy", "surprise"]


class _Trap:
    """Unpickled, it calls open(marker, "w"): the file appears. A stand-in for any code a file could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tiny(fer_root, tmp_path_factory) -> tuple[Path, Path]:
    """A two-class dataset and a one-epoch run on it."""
    root = tmp_path_factory.mktemp("hs")
    for split, n in (("train", 40), ("val", 12)):
        for cls in LABELS:
            d = root / split / cls
            d.mkdir(parents=True)
            for f in sorted((fer_root / split / cls).iterdir())[:n]:
                (d / f.name).symlink_to(f)
    out = tmp_path_factory.mktemp("run") / "r"
    train(TrainConfig(data=str(root), out=str(out), model="vgg_s", epochs=1, batch_size=16, seed=0))
    return root, out


def _trap_checkpoint(path: Path, marker: Path, like: Path) -> Path:
    """A checkpoint that looks like an emolens one (same keys, real weights) with the trap inside."""
    ck = torch.load(like, map_location="cpu", weights_only=True)
    ck["state"] = _Trap(marker) if "state" in ck else None
    ck["extra"] = _Trap(marker)
    torch.save(ck, path)
    return path


def test_checkpoints_emolens_writes_load_with_the_weights_only_unpickler_alone(tiny):
    """last.pt (optimizer and every random-generator state included) and best.pt need nothing beyond
    tensors and plain values: PyTorch's own weights-only load reads them, without emolens' numpy allowance."""
    _, run = tiny
    for name in ("last.pt", "best.pt"):
        ck = torch.load(run / name, map_location="cpu", weights_only=True)
        assert ck["classes"] == LABELS
    rng = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["rng"]
    assert {"generator", "torch", "numpy", "python"} <= set(rng)


def test_a_checkpoint_that_would_run_code_is_refused_everywhere(tiny, tmp_path, capsys):
    data, run = tiny
    marker = tmp_path / "pwned.txt"
    evil = _trap_checkpoint(tmp_path / "evil.pt", marker, run / "best.pt")

    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(evil)
    assert main(["export", str(evil), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "run code" in err and "Traceback" not in err
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "init"), "--epochs", "1",
                 "--init", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err

    # --resume reads the run's own last.pt: one swapped for a trap is refused too
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for f in run.iterdir():
        if f.is_file() and f.name != "last.pt":
            (resumed / f.name).write_bytes(f.read_bytes())
    _trap_checkpoint(resumed / "last.pt", marker, run / "last.pt")
    assert main(["train", "--out", str(resumed), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err

    from emolens.training.gradcam import GradCAM

    with pytest.raises(ValueError, match="refused"):
        GradCAM.from_checkpoint(evil)
    assert not marker.exists()  # no road ran the file's code
    torch.load(evil, map_location="cpu", weights_only=False)  # control: an unsafe load does run it
    assert marker.exists()


def test_foreign_and_broken_files_get_a_reason(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(text)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="not an emolens checkpoint"):
        read_checkpoint(tensor)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_written_before_keeps_resuming(tiny, tmp_path):
    """Checkpoints from before stored numpy's generator state as a numpy array: arrays of numbers are
    allowed (building one runs no code), so such a run still resumes."""
    import numpy as np

    data, run = tiny
    old = tmp_path / "old"
    old.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (old / f.name).write_bytes(f.read_bytes())
    ck = torch.load(old / "last.pt", map_location="cpu", weights_only=True)
    name, keys, pos, has_gauss, cached = ck["rng"]["numpy"]
    ck["rng"]["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)  # the old form
    ck["rng"]["python"] = tuple(ck["rng"]["python"][:1]) + (tuple(ck["rng"]["python"][1]),) + (None,)
    torch.save(ck, old / "last.pt")
    with pytest.raises(Exception):  # noqa: B017 - PyTorch's own weights-only load refuses the array ...
        torch.load(old / "last.pt", map_location="cpu", weights_only=True)
    assert read_checkpoint(old / "last.pt")["classes"] == LABELS  # ... emolens reads it
    assert main(["train", "--out", str(old), "--resume", "--epochs", "2"]) == 0
    assert "resumed after epoch 1" in (old / "train.log").read_text()
