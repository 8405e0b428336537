"""Training options on a tiny real subset of FER2013 (20 images per class, 48 px): optimisers, schedules,
imbalance handling, early stopping, best-checkpoint selection, precision and device, resume after a real kill
(which must repeat the uninterrupted run exactly), YAML configs and the errors a bad config gets."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_subsets import fer_subset

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

from emolens.cli import main  # noqa: E402
from emolens.training.augment import AugmentConfig, augment_batch  # noqa: E402
from emolens.training.loop import TrainConfig, lr_at, mix_batch, normalise, resolve_device, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = {"limit_per_class": 20, "batch_size": 32, "threads": 2, "model": "vgg_s"}


@pytest.fixture(scope="module")
def imbalanced(fer_root, tmp_path_factory):
    """<root>/{train,val}/{happy,disgust}: 60 happy and 15 disgust train images (symlinks to FER2013)."""
    return fer_subset(fer_root, tmp_path_factory.mktemp("imbalanced"),
                      {"train": {"happy": 60, "disgust": 15}, "val": {"happy": 20, "disgust": 20}})


def _history(run: Path) -> list[dict]:
    with (run / "history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _run(fer_root, tmp_path, name="run", **kw) -> Path:
    cfg = TrainConfig.from_dict({"data": str(fer_root), "out": str(tmp_path / name), **TINY, **kw})
    return train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"optimizer": "sgd", "nesterov": True, "lr": 0.01, "schedule": "step", "step_size": 1, "gamma": 0.5},
    {"optimizer": "adam", "schedule": "plateau", "plateau_patience": 1, "precision": "fp32", "label_smoothing": 0.0},
    {"optimizer": "adamw", "schedule": "constant", "precision": "bf16", "device": "cpu", "select": "loss",
     "augment": {"hflip": False, "rotate": 0, "shift": 0, "zoom": 0, "erase": 0, "shear": 5.0}},
], ids=["sgd-step", "adam-plateau-fp32", "adamw-constant-bf16-cpu"])
def test_optimiser_schedule_and_precision_options_train_and_log(fer_root, tmp_path, options):
    run = _run(fer_root, tmp_path, epochs=2, **options)
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    lrs = [float(r["lr"]) for r in rows]
    cfg = json.loads((run / "config.json").read_text())
    assert {k: cfg[k] for k in options if k != "augment"} == {k: v for k, v in options.items() if k != "augment"}
    if options["schedule"] == "step":
        assert lrs == pytest.approx([0.01, 0.005])
    if options["schedule"] == "constant":
        assert lrs == pytest.approx([cfg["lr"]] * 2)
    for png in ("accuracy.png", "loss.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/acc")] == [1, 2]
    assert (run / "model.onnx").is_file()


def test_lr_schedules():
    cfg = TrainConfig(data="x", lr=1.0, warmup=0.1, schedule="cosine")
    assert lr_at(0, 100, 0, cfg) == pytest.approx(0.1)
    assert lr_at(10, 100, 0, cfg) == pytest.approx(1.0)
    assert lr_at(99, 100, 9, cfg) < 0.01
    step = TrainConfig(data="x", lr=1.0, schedule="step", step_size=3, gamma=0.1)
    assert [lr_at(0, 100, e, step) for e in (0, 2, 3, 6)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


@pytest.mark.slow
def test_balanced_class_weights_and_sampler(imbalanced, tmp_path):
    run = train(TrainConfig(data=str(imbalanced), out=str(tmp_path / "cw"), model="vgg_s", epochs=1, batch_size=32,
                            class_weights="balanced", sampler="balanced", threads=2))
    log = (run / "train.log").read_text()
    assert "class weights: disgust 2.50, happy 0.62" in log  # 75 / (2 * 15), 75 / (2 * 60)
    run = train(TrainConfig(data=str(imbalanced), out=str(tmp_path / "sqrt"), model="vgg_s", epochs=1, batch_size=32,
                            class_weights="sqrt", threads=2))
    assert "class weights: disgust 1.58, happy 0.79" in (run / "train.log").read_text()  # their square roots


@pytest.mark.slow
def test_early_stopping_and_best_checkpoint_on_the_chosen_metric(fer_root, tmp_path):
    # A learning rate far too high: the val loss gets no better after epoch 1, so patience 1 stops at epoch 2.
    run = _run(fer_root, tmp_path, epochs=5, optimizer="sgd", lr=5.0, schedule="constant", patience=1,
               select="macro_f1")
    rows = _history(run)
    assert len(rows) < 5
    assert "early stop" in (run / "train.log").read_text()
    best = torch.load(run / "best.pt", weights_only=False)
    f1 = [float(r["val_macro_f1"]) for r in rows]
    assert best["epoch"] + 1 == int(rows[f1.index(max(f1))]["epoch"])


@pytest.mark.slow
def test_select_last_keeps_the_last_epoch(fer_root, tmp_path):
    """Fine-tuning toward faces the val split does not hold: best.pt is the last epoch, whatever val says."""
    run = _run(fer_root, tmp_path, epochs=3, optimizer="sgd", lr=5.0, schedule="constant", select="last")
    assert torch.load(run / "best.pt", weights_only=False)["epoch"] == 2 and len(_history(run)) == 3


HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr")


@pytest.mark.slow
def test_resume_after_a_kill_mid_epoch_repeats_the_uninterrupted_run(fer_root, tmp_path):
    """Killed with SIGKILL inside epoch 2 and resumed with only --out and --resume (the run's config.json
    supplies the rest): the history equals an uninterrupted run's, number for number (vgg_s has dropout, so
    this needs torch's global generator restored as well as the run's own)."""
    cmd = [sys.executable, "-m", "emolens", "train", "--data", str(fer_root), "--limit-per-class", "30",
           "--batch-size", "8", "--threads", "1", "--epochs", "3", "--model", "vgg_s", "--device", "cpu"]
    whole = subprocess.run(cmd + ["--out", str(tmp_path / "whole")], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (run / "last.pt").exists(), "epoch 1 never finished"
        time.sleep(0.2)  # inside epoch 2
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run / "model.onnx").exists()
    assert [r["epoch"] for r in _history(run)] == ["1"]
    done = subprocess.run([sys.executable, "-m", "emolens", "train", "--out", str(run), "--resume"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed after epoch 1" in (run / "train.log").read_text()
    assert (run / "model.onnx").is_file()
    resumed, uninterrupted = _history(run), _history(tmp_path / "whole")
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    for a, b in zip(resumed, uninterrupted):
        assert [float(a[c]) for c in HISTORY_COLUMNS] == pytest.approx([float(b[c]) for c in HISTORY_COLUMNS],
                                                                       rel=1e-6, abs=1e-6), a["epoch"]
    best, best_whole = (torch.load(r / "best.pt", weights_only=False) for r in (run, tmp_path / "whole"))
    assert best["epoch"] == best_whole["epoch"] and best["val_acc"] == best_whole["val_acc"]


@pytest.fixture(scope="module")
def tiny_run(fer_root, tmp_path_factory) -> Path:
    """A finished 1-epoch run; tests copy it before changing it."""
    return train(TrainConfig.from_dict({"data": str(fer_root), "out": str(tmp_path_factory.mktemp("t") / "run"),
                                        **TINY, "limit_per_class": 8, "epochs": 1}))


@pytest.mark.slow
def test_resume_refuses_another_architecture_before_touching_the_run(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--model", "seed003_cnn"]) == 2
    err = capsys.readouterr().err
    assert "was trained with model 'vgg_s', not 'seed003_cnn'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()} == before


@pytest.mark.slow
def test_a_kill_between_last_pt_and_best_pt_is_repaired_on_resume(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "best.pt").unlink()  # last.pt says epoch 1 is done (and best); best.pt never got written
    (run / "model.onnx").unlink()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    best, last = (torch.load(run / name, weights_only=False) for name in ("best.pt", "last.pt"))
    assert best["epoch"] == 0 and best["val_acc"] == pytest.approx(float(_history(run)[0]["val_acc"]), abs=1e-5)
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    assert (run / "model.onnx").is_file() and [r["epoch"] for r in _history(run)] == ["1"]


def test_precision_auto_is_bf16_only_where_the_cpu_runs_it_natively(fer_root, tmp_path, monkeypatch):
    """bf16 autocast on a CPU without native bf16 (AVX2 only) is emulated, ~10x slower than fp32: the
    default (auto) trains in fp32 there; asking for bf16 still gets it, with a note saying what it costs."""
    from emolens.training import loop

    cpu = torch.device("cpu")
    assert TrainConfig(data=str(fer_root)).precision == "auto"
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    assert loop.amp_dtype("auto", cpu) == torch.bfloat16 and loop.amp_dtype("fp32", cpu) is None
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    assert loop.amp_dtype("auto", cpu) is None and loop.amp_dtype("bf16", cpu) == torch.bfloat16

    tiny = {"limit_per_class": 4, "epochs": 1, "device": "cpu", "tensorboard": False}
    log = (_run(fer_root, tmp_path, "auto", **tiny) / "train.log").read_text()
    assert "autocast off (fp32) (precision auto)" in log and "no native bf16" not in log
    log = (_run(fer_root, tmp_path, "bf16", precision="bf16", **tiny) / "train.log").read_text()
    assert "autocast bfloat16" in log and "no native bf16 kernels" in log


def test_device_auto_picks_what_torch_sees():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("flags, message", [
    (["--device", "cuda"], "device cuda: torch"),
    (["--precision", "fp16", "--device", "cpu"], "precision fp16 needs a GPU"),
    (["--augment", "flip=true"], "--augment flip=true: expected KEY=VALUE with KEY one of hflip, rotate"),
    (["--augment", "erase=2"], "erase must be a probability in [0, 1]"),
    (["--augment", "rotate=lots"], "rotate takes a number"),
])
def test_device_precision_and_augment_flags_get_a_one_line_error(fer_root, tmp_path, capsys, flags, message):
    if "cuda" in flags and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["train", "--data", str(fer_root), "--out", str(tmp_path / "never"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_augment_flags_reach_the_run_config(fer_root, tmp_path):
    out = tmp_path / "aug"
    assert main(["train", "--data", str(fer_root), "--out", str(out), "--limit-per-class", "4", "--epochs", "1",
                 "--threads", "2", "--no-augment", "--augment", "rotate=15", "--augment", "hflip=yes"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["augment"] == {**{k: 0.0 for k in config["augment"]}, "hflip": True, "rotate": 15.0}
    assert config["device"] == "auto" and config["precision"] == "auto"
    if not torch.cuda.is_available():
        from emolens.training.loop import cpu_has_bf16

        autocast = "bfloat16" if cpu_has_bf16() else "off (fp32)"
        assert f"device: cpu, autocast {autocast} (precision auto)" in (out / "train.log").read_text()


def test_augmentation_and_mixing_stay_on_the_batch_device():
    """On the meta device any CPU tensor mixed into the batch's arithmetic raises: the warp, contrast, erasing,
    mixing and normalisation all run where the batch is (a GPU in training), only the draws are on the CPU."""
    x = torch.rand(6, 1, 48, 48, device="meta")
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, AugmentConfig(shear=5.0, erase=1.0), gen)
    assert out.device.type == "meta" and out.shape == x.shape
    cfg = TrainConfig(data="x", mixup=0.2, cutmix=1.0, mean=[0.5], std=[0.5])
    for _ in range(4):
        mixed, pair, lam = mix_batch(out, cfg, gen)
        assert mixed.device.type == "meta" and pair.device.type == "meta" and 0 <= lam <= 1
    assert normalise(out, cfg).device.type == "meta"


@pytest.mark.slow
def test_yaml_config_round_trip_reproduces_the_run(fer_root, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(fer_root), "out": str(tmp_path / "a"), "epochs": 1,
                                      "optimizer": "sgd", "lr": 0.02, "nesterov": True, **TINY,
                                      "augment": {"erase": 0.5}}))
    assert main(["train", "--config", str(config)]) == 0
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    assert written["augment"]["erase"] == 0.5 and written["optimizer"] == "sgd" and written["mean"] == [0.5]
    assert main(["train", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "config.json").read_text())
    assert {**again, "out": None} == {**written, "out": None}
    cols = ("train_loss", "val_acc", "val_loss")
    assert [[r[c] for c in cols] for r in _history(tmp_path / "a")] == \
        [[r[c] for c in cols] for r in _history(tmp_path / "b")]


@pytest.mark.parametrize("text, message", [
    ("data: x\nlerning_rate: 0.1\n", "unknown config key(s) lerning_rate; valid top-level keys: data, out"),
    ("data: x\naugment: {flip: true}\n", "unknown config key(s) augment.flip; valid augment.keys: hflip"),
    ("data: x\noptimizer: rmsprop\n", "optimizer must be one of adamw, adam, sgd"),
    ("data: x\nmodel: resnet9000\n", "unknown model 'resnet9000'; available:"),
    ("data: x\nepochs: 0\n", "epochs must be a positive integer"),
    ("data: [x\n", "not valid YAML"),
    ("- data\n- x\n", "must hold a mapping"),
])
def test_bad_configs_get_a_one_line_error(tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_weights_on_a_model_without_a_pretrained_base_is_refused(fer_root, tmp_path, capsys):
    code = main(["train", "--data", str(fer_root), "--out", str(tmp_path / "r"), "--model", "vgg_s",
                 "--weights", "x.pth", "--limit-per-class", "2", "--epochs", "1"])
    assert code == 2
    assert "apply to transfer models only" in capsys.readouterr().err


def test_committed_configs_still_load():
    for path in sorted((REPO / "configs").iterdir()):
        text = path.read_text()
        d = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
        if "data" not in d:  # a recipe for any dataset (finetune_small.yaml): --data gives it
            assert "--data" in text, path
            d = {**d, "data": "DATA"}
        cfg = TrainConfig.from_dict(d)
        assert cfg.epochs >= 1, path


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing_in_the_way(fer_root, tmp_path, capsys):
    """Bad data fails after the run folder is made: the folder goes again (an empty one the user made stays),
    so the corrected command is not told that a run already exists; a file given as --out is left alone."""
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(out), "--epochs", "1"]) == 2
    assert "no such file or folder" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(out), "--epochs", "1"]) == 2
    assert out.is_dir() and not any(out.iterdir())
    assert main(["train", "--data", str(fer_root), "--out", str(out), "--epochs", "1", "--limit-per-class", "2",
                 "--batch-size", "8", "--threads", "1"]) == 0
    assert (out / "model.onnx").is_file()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["train", "--data", str(fer_root), "--out", str(notes), "--epochs", "1"]) == 2
    assert "is a file, not a run folder" in capsys.readouterr().err and notes.read_text() == "mine"


def test_the_command_options_from_python_recipe_resume_and_augment_keys(fer_root, tmp_path):
    """`emolens train`'s option handling as a library call: a recipe file with options over it, --augment keys
    checked, a run's stored config under --resume; bad options are one-line TrainOptionsErrors."""
    from emolens.training.options import TrainOptionsError, train_options

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: vgg_xs\nepochs: 7\nlr: 0.001\n")
    merged = train_options(recipe, data=str(fer_root), epochs=2, lr=None, augment=["blur=0.3", "hflip=false"])
    assert merged["model"] == "vgg_xs" and merged["epochs"] == 2 and merged["lr"] == 0.001
    assert merged["augment"]["blur"] == 0.3 and merged["augment"]["hflip"] is False
    off = train_options({"data": "d"}, no_augment=True)["augment"]
    assert off == dataclasses.asdict(AugmentConfig.off())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": "stored", "model": "vgg_s", "epochs": 30}))
    resumed = train_options(None, resume=True, out=str(run), epochs=40)
    assert resumed["data"] == "stored" and resumed["model"] == "vgg_s" and resumed["epochs"] == 40
    for call, message in [
        (lambda: train_options(None), "give the dataset with --data"),
        (lambda: train_options({"data": "d"}, augment=["blur=2"]), "a probability in"),
        (lambda: train_options({"data": "d"}, augment=["wobble=1"]), "expected KEY=VALUE"),
        (lambda: train_options(tmp_path / "none.yaml"), "cannot read"),
    ]:
        with pytest.raises(TrainOptionsError, match=message):
            call()
