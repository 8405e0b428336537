"""Training on several processes (DDP, gloo on the CPU): ``emolens train --nproc 2`` and torchrun itself.

On this 2-core machine these runs prove correctness, not speed: two processes of one thread each train as one run,
reach the accuracy one process reaches, score every val image exactly once with the same weights on both, write the
run folder from rank 0 alone, resume on another number of processes, repeat themselves exactly when resumed on as
many, and fail in bounded time (never hang) when a process is missing. Every subprocess has a timeout."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fer_subsets import fer_subset

torch = pytest.importorskip("torch")

from emolens.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT = 300  # seconds any one training command may take here before the test fails


def _subset(fer_root: Path, root: Path, train: int, val: dict[str, int]) -> Path:
    return fer_subset(fer_root, root, {"train": {"happy": train, "surprise": train}, "val": val})


def _train(*args: str, torchrun: int = 0) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "emolens", "train"]
    if torchrun:  # the documented command: torchrun --standalone --nproc_per_node=N -m emolens train ...
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
                "-m", "emolens", "train"]
    return subprocess.run([*head, *args], cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


def _history(run: Path) -> list[dict]:
    with (run / "history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(fer_root, tmp_path_factory):
    """happy/surprise, 150 + 150 train and 41 + 40 val images (an odd count: no even split between 2 processes),
    6 epochs from scratch in fp32, seed 0: once on 1 process and once with --nproc 2."""
    tmp = tmp_path_factory.mktemp("ddp")
    data = _subset(fer_root, tmp / "data", 150, {"happy": 41, "surprise": 40})
    common = ["--data", str(data), "--model", "vgg_s", "--epochs", "6", "--batch-size", "32", "--precision", "fp32",
              "--device", "cpu", "--dist-timeout", "120"]
    one = _train(*common, "--threads", "1", "--out", str(tmp / "one"))
    assert one.returncode == 0, one.stderr
    two = _train(*common, "--nproc", "2", "--out", str(tmp / "two"))
    assert two.returncode == 0, two.stderr
    return {"one": tmp / "one", "two": tmp / "two", "two_output": two, "data": data}


@pytest.mark.slow
def test_two_processes_train_as_one_run_written_by_rank_0(runs):
    run, out = runs["two"], runs["two_output"]
    log = (run / "train.log").read_text()
    assert "processes: 2 (gloo), 16 images each a step (batch 32 in all)" in log
    assert log.count("epoch 6/6:") == 1  # one process logs, once
    assert out.stdout.count("run folder:") == 1
    assert [r["epoch"] for r in _history(run)] == [str(e) for e in range(1, 7)]
    assert sorted(p.name for p in run.iterdir() if p.suffix in (".pt", ".onnx", ".tmp")) == [
        "best.pt", "last.pt", "model.onnx"]
    from emolens.classify import Classifier

    assert Classifier(run / "model.onnx").labels == ["happy", "surprise"]


@pytest.mark.slow
def test_two_processes_reach_the_accuracy_of_one(runs):
    acc = {k: max(float(r["val_acc"]) for r in _history(runs[k])) for k in ("one", "two")}
    assert acc["one"] >= 0.70 and acc["two"] >= 0.70, acc  # chance is 0.51
    assert abs(acc["one"] - acc["two"]) <= 0.10, acc


@pytest.mark.slow
def test_validation_scores_every_image_once_with_the_same_weights_on_both_processes(runs):
    """Each process scores its half of the 81 val images and the halves are gathered: the metrics recorded for
    best.pt are what best.pt itself scores on the whole split in one process (a padded duplicate, a missed image or
    a process validating other weights than rank 0's would each change them)."""
    from emolens.training.checkpoint import read_checkpoint
    from emolens.training.data import open_source
    from emolens.training.loop import TrainConfig, build_model, predict_logits

    best = read_checkpoint(runs["two"] / "best.pt")
    cfg = TrainConfig.from_dict(best["config"])
    va = open_source(runs["two"]).load("val", size=48, channels=1, classes=best["classes"])
    assert len(va) == 81
    model = build_model(cfg, len(best["classes"]))
    model.load_state_dict(best["model"])
    logits = predict_logits(model, va.images, cfg, torch.device("cpu"), None)
    acc = float((logits.argmax(1).numpy() == va.labels).mean())
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(va.labels)).item()
    assert acc == pytest.approx(best["val_acc"], abs=1.01 / 81)
    assert loss == pytest.approx(best["val_loss"], abs=1e-3)


@pytest.mark.slow
def test_a_two_process_run_resumes_in_one_and_a_one_process_run_in_two(runs, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    shutil.copytree(runs["two"], two)
    shutil.copytree(runs["one"], one)
    done = _train("--out", str(two), "--resume", "--epochs", "7", "--threads", "1")
    assert done.returncode == 0, done.stderr
    log = (two / "train.log").read_text()
    assert "resumed after epoch 6" in log and log.count("processes: 2") == 1  # the second part ran in one
    assert len(_history(two)) == 7
    done = _train("--out", str(one), "--resume", "--epochs", "7", "--dist-timeout", "120", torchrun=2)
    assert done.returncode == 0, done.stderr
    log = (one / "train.log").read_text()
    assert "resumed after epoch 6" in log and "processes: 2 (gloo)" in log
    assert len(_history(one)) == 7 and (one / "model.onnx").is_file()


@pytest.mark.slow
def test_a_resumed_two_process_run_repeats_the_uninterrupted_one(fer_root, tmp_path):
    """1 epoch, then --resume to 2, on 2 processes: the weights (and their moving average) equal a 2-epoch run's bit
    for bit (a constant learning rate, so that the first part's shorter schedule does not differ)."""
    data = _subset(fer_root, tmp_path / "data", 48, {"happy": 21, "surprise": 20})
    common = ["--data", str(data), "--model", "vgg_s", "--batch-size", "16", "--precision", "fp32", "--mixup", "0.2",
              "--schedule", "constant", "--ema", "0.9", "--nproc", "2", "--dist-timeout", "120"]
    whole = _train(*common, "--epochs", "2", "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    part = _train(*common, "--epochs", "1", "--out", str(tmp_path / "part"))
    assert part.returncode == 0, part.stderr
    rest = _train("--out", str(tmp_path / "part"), "--resume", "--epochs", "2", "--nproc", "2")
    assert rest.returncode == 0, rest.stderr
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("whole", "part"))
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert _history(tmp_path / "whole")[1]["val_acc"] == _history(tmp_path / "part")[1]["val_acc"]


@pytest.mark.slow
def test_a_process_that_never_joins_fails_the_run_in_time(fer_root, tmp_path):
    """Rank 0 of 2 started alone (as when a node never comes): it gives up after --dist-timeout with one line,
    and leaves no run folder."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "emolens", "train", "--data", str(fer_root), "--out",
                           str(tmp_path / "run"), "--dist-timeout", "3"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert time.monotonic() - t0 < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "process 0 of 2 could not join the others" in lines[0], done.stderr
    assert not (tmp_path / "run").exists()


def test_nproc_input_is_checked_before_any_process_starts(tmp_path, capsys):
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--nproc", "2",
                 "--batch-size", "33"]) == 2
    assert "batch_size 33 is the batch of all 2 processes together" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    held = tmp_path / "held"
    held.mkdir()
    (held / "config.json").write_text("{}")
    assert main(["train", "--data", str(data), "--out", str(held), "--nproc", "2"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (held / "config.json").read_text() == "{}"
    assert main(["train", "--data", str(data), "--nproc", "2", "--dist-timeout", "0"]) == 2
    assert "--dist-timeout must be a positive number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--nproc", "0"])


def test_one_process_gathers_nothing():
    """Outside torchrun nothing of DDP runs: the helpers hand back what they were given."""
    from emolens.training import ddp

    d = ddp.from_env()
    assert (d.rank, d.world, d.main, d.active) == (0, 1, True, False)
    rows = np.arange(5)
    assert d.gather_rows(lambda r: torch.from_numpy(r * 2), rows).tolist() == [0, 2, 4, 6, 8]
    assert d.sum(1.5, 2) == [1.5, 2]
