"""Fine-tuning emolens' own models to a user's label set (`emolens train --data DATA --init default`): the
network is kept, a new classifier is built for the data's labels, and a small dataset gets far with little
training; the result predicts through `emolens predict --model`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.classify import Classifier  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.evaluation.metrics import evaluate_model  # noqa: E402
from emolens.training.loop import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.slow


def _flat(fer_root: Path, root: Path, classes: dict[str, str], per_class: int) -> Path:
    """Flat <label>/*.jpg folders (a user's own dataset) of FER2013 training faces: {label: FER class}."""
    for label, fer_class in classes.items():
        (root / label).mkdir(parents=True)
        for f in sorted((fer_root / "train" / fer_class).iterdir())[-per_class:]:
            shutil.copy(f, root / label / f.name)
    return root


@pytest.fixture(scope="module")
def happy_sad(fer_root, tmp_path_factory) -> Path:
    return _flat(fer_root, tmp_path_factory.mktemp("hs") / "data", {"happy": "happy", "sad": "sad"}, 100)


def _test_accuracy(run: Path, data: Path) -> float:
    return evaluate_model(run, data, "test").report["accuracy"]


def test_fine_tuning_from_default_beats_the_same_budget_from_scratch(happy_sad, tmp_path):
    budget = {"data": str(happy_sad), "epochs": 2, "batch_size": 32, "seed": 0, "threads": 2}
    scratch = train(TrainConfig(**budget, out=str(tmp_path / "scratch")))
    tuned = train(TrainConfig(**budget, out=str(tmp_path / "tuned"), init="default", lr=3e-4))
    a_scratch, a_tuned = _test_accuracy(scratch, happy_sad), _test_accuracy(tuned, happy_sad)
    assert a_tuned >= 0.85 and a_tuned >= a_scratch + 0.2, (a_tuned, a_scratch)
    log = (tuned / "train.log").read_text()
    assert "new classifier for happy, sad; happy, sad start from its rows" in log
    config = json.loads((tuned / "config.json").read_text())
    assert config["model"] == "vgg_m" and config["init"] == "default"  # default's first member, stated
    clf = Classifier(tuned / "model.onnx")
    assert clf.labels == ["happy", "sad"] and clf.meta.input_size == 48 and clf.meta.channels == 1

    # the exported model predicts through the command line like any other
    face = next((happy_sad / "happy").iterdir())
    r = subprocess.run([sys.executable, "-m", "emolens", "predict", "--json", "--no-detect", "--model",
                        str(tuned / "model.onnx"), str(face)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (result,) = json.loads(r.stdout)
    assert set(result["faces"][0]["scores"]) == {"happy", "sad"}


def test_a_label_the_source_does_not_know_gets_a_fresh_row(fer_root, tmp_path):
    data = _flat(fer_root, tmp_path / "data", {"happy": "happy", "thumbs_up": "surprise"}, 40)
    run = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), init="fast", epochs=1, batch_size=16,
                            lr=3e-4, threads=2))
    log = (run / "train.log").read_text()
    assert "new classifier for happy, thumbs_up; happy start from its rows" in log
    assert Classifier(run / "model.onnx").labels == ["happy", "thumbs_up"]
    assert json.loads((run / "config.json").read_text())["model"] == "vgg_xs"  # fast is one int8 vgg_xs


def test_freeze_keeps_the_conv_stages_of_an_own_net(happy_sad, tmp_path):
    """--freeze with --init: emolens' own nets keep their conv stages (weights and BatchNorm statistics) and
    train the classifier; --unfreeze-last 1 trains the last stage too."""
    from emolens.training.export import load_checkpoint

    runs = {}
    for name, extra in (("frozen", {"freeze": True}), ("last", {"unfreeze_last": 1})):
        runs[name] = train(TrainConfig(data=str(happy_sad), out=str(tmp_path / name), init="fast", epochs=1,
                                       batch_size=32, lr=1e-3, threads=2, **extra))
    log = (runs["frozen"] / "train.log").read_text()
    trainable = int(log.split("parameters (")[1].split(" trainable")[0].replace(",", ""))
    assert trainable < 1_765_000 / 2
    src = load_checkpoint(runs["frozen"] / "best.pt")[0].features
    from emolens.training.finetune import resolve_init, source_weights

    state, _ = source_weights(resolve_init("fast"), np.zeros((4, 48, 48, 1), np.uint8) + 128)
    first_conv = state["features.0.weight"]
    assert torch.equal(src[0].weight, first_conv)  # the first stage did not move
    last = load_checkpoint(runs["last"] / "best.pt")[0].features
    assert torch.equal(last[0].weight, first_conv) and not torch.equal(last[24].weight, state["features.24.weight"])


def test_bad_init_gets_one_clear_line(happy_sad, tmp_path, capsys):
    base = ["train", "--data", str(happy_sad), "--epochs", "1"]
    cases = [
        (["--init", str(tmp_path / "nowhere.onnx"), "--out", str(tmp_path / "a")], "no such file"),
        (["--init", "default", "--model", "vgg_s", "--out", str(tmp_path / "b")], "it cannot start a vgg_s"),
        (["--freeze", "--out", str(tmp_path / "c")], "freezing applies to a model fine-tuned from --init"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not (tmp_path / extra[-1]).exists()  # a failed start leaves no run folder


def test_resume_of_a_run_saved_before_freeze_applied_to_own_nets(tmp_path):
    """A config.json from before (version 1) says freeze: true for every model, which did nothing to emolens'
    own nets; resuming it must not start freezing them."""
    from emolens.training.loop import upgrade_config

    old = {"model": "vgg_s", "freeze": True, "init": "x.pt"}
    assert upgrade_config(old)["freeze"] is False
    assert upgrade_config({"model": "mobilenet_v2", "freeze": True})["freeze"] is True
    assert upgrade_config({"model": "vgg_s", "freeze": True, "config_version": 2})["freeze"] is True


def test_init_without_a_recipe_fine_tunes_gently_and_what_the_user_sets_wins():
    """`emolens train --data DIR --init default` with no config trained at the from-scratch rate (2e-3) and undid
    what the source knew; with --init the unset options now come from the fine-tuning recipe
    (configs/finetune_small.yaml's values), without it from the from-scratch defaults."""
    import yaml

    from emolens.training.loop import FINETUNE, SCRATCH, TrainConfig

    recipe = yaml.safe_load((Path(__file__).parents[1] / "configs" / "finetune_small.yaml").read_text())
    assert FINETUNE == {k: recipe[k] for k in FINETUNE}
    tuned = TrainConfig.from_dict({"data": "x", "init": "default"})
    assert (tuned.lr, tuned.epochs, tuned.batch_size) == (3e-4, 3, 32)
    scratch = TrainConfig.from_dict({"data": "x"})
    assert (scratch.lr, scratch.epochs, scratch.batch_size) == (SCRATCH["lr"], 30, 128)
    mine = TrainConfig(data="x", init="fast", lr=1e-3, epochs=7)
    assert (mine.lr, mine.epochs, mine.batch_size) == (1e-3, 7, 32)
