"""The augmentation keys on real FER2013 faces: each real-photo key changes a face as its documentation says,
everything off leaves it as it is, the same seed draws the same, bad values are refused; and a model exported
to ONNX comes back as a checkpoint that computes the same (fine-tuning from shipped models)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.cli import main  # noqa: E402
from emolens.face.align import FER2013_TEMPLATE  # noqa: E402
from emolens.modelmeta import ModelMeta  # noqa: E402
from emolens.training.augment import AugmentConfig, augment_batch  # noqa: E402
from emolens.training.photo import _Draw, occluder_mask  # noqa: E402

PHOTO_KEYS = ("occlude", "blur", "downscale", "noise", "jpeg")


@pytest.fixture(scope="module")
def faces(fer_root) -> torch.Tensor:
    """32 real FER2013 val faces (N×1×48×48 in [0, 1]), 4-5 of each class."""
    files = [f for c in sorted((fer_root / "val").iterdir()) for f in sorted(c.iterdir())[:5]][:32]
    imgs = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    return torch.from_numpy(np.stack(imgs)[:, None].astype(np.float32) / 255)


def only(key: str, value: float = 1.0) -> AugmentConfig:
    return dataclasses.replace(AugmentConfig.off(), **{key: value})


def detail(x: torch.Tensor) -> np.ndarray:
    """Per face: the mean absolute Laplacian (fine detail)."""
    return np.array([np.abs(cv2.Laplacian(f[0].numpy(), cv2.CV_32F)).mean() for f in x])


def test_everything_off_leaves_the_faces_as_they_are(faces):
    out = augment_batch(faces, AugmentConfig.off(), torch.Generator().manual_seed(0))
    assert torch.equal(out, faces)


def test_the_photo_keys_are_off_unless_set():
    cfg = AugmentConfig()
    assert all(getattr(cfg, k) == 0 for k in (*PHOTO_KEYS, "gamma"))


@pytest.mark.parametrize("key", [*PHOTO_KEYS, "gamma"])
def test_the_same_seed_draws_the_same(faces, key):
    cfg = only(key, 0.5)
    a = augment_batch(faces, cfg, torch.Generator().manual_seed(7))
    b = augment_batch(faces, cfg, torch.Generator().manual_seed(7))
    c = augment_batch(faces, cfg, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == faces.shape and a.dtype == faces.dtype and 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("key", ["blur", "downscale"])
def test_blur_and_downscale_take_fine_detail_away(faces, key):
    out = augment_batch(faces, only(key), torch.Generator().manual_seed(0))
    before, after = detail(faces), detail(out)
    assert (after <= before + 1e-6).all() and after.mean() < 0.8 * before.mean()
    assert abs(out.mean() - faces.mean()) < 0.01  # light is kept


def test_noise_adds_grain_around_the_face(faces):
    out = augment_batch(faces, only("noise"), torch.Generator().manual_seed(0))
    resid = (out - faces).flatten(1)
    assert (resid.std(1) > 0.005).all() and (resid.std(1) < 0.12).all()
    assert abs(resid.mean()) < 0.01


def test_jpeg_recompression_leaves_8x8_blocks(faces):
    out = augment_batch(faces, only("jpeg"), torch.Generator().manual_seed(0))
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-3)  # decoded 8-bit pixels
    d = (out - faces).abs().mean(dim=(1, 2, 3))
    assert (d > 0.002).all()
    # steps between pixels across a block edge (columns 7|8, 15|16, ...) are larger than inside blocks
    step = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(0, 1, 2))
    edges = step[7::8].mean()
    inside = torch.cat([step[k::8] for k in range(7)]).mean()
    assert edges > 1.1 * inside


def test_gamma_keeps_the_order_of_pixels_and_changes_their_values(faces):
    out = augment_batch(faces, only("gamma", 0.5), torch.Generator().manual_seed(0))
    assert not torch.equal(out, faces)
    for f, o in zip(faces, out):
        a, b = f.flatten(), o.flatten()
        order = torch.argsort(a)
        assert (b[order][1:] >= b[order][:-1] - 1e-6).all()


def test_an_occluder_covers_part_of_the_face_and_leaves_the_rest(faces):
    out = augment_batch(faces, only("occlude"), torch.Generator().manual_seed(0))
    changed = ((out - faces).abs() > 1e-4).float().mean(dim=(1, 2, 3))
    assert (changed > 0.03).all() and (changed < 0.6).all()


def test_occluders_sit_where_documented():
    """Bands over the eyes at the eyes' height of FER2013's framing, patches over the mouth at the mouth's,
    hands in the lower part of the face."""
    d = _Draw(torch.Generator().manual_seed(0))
    seen: dict[str, list[float]] = {"hand": [], "eyes": [], "mouth": []}
    for _ in range(200):
        m, kind = occluder_mask(48, d)
        ys = np.arange(48)[:, None]
        seen[kind].append(float((m * ys).sum() / m.sum() / 48))
    assert all(len(v) > 20 for v in seen.values())
    assert abs(np.mean(seen["eyes"]) - FER2013_TEMPLATE[0][1]) < 0.05
    assert abs(np.mean(seen["mouth"]) - FER2013_TEMPLATE[3][1]) < 0.05
    assert np.mean(seen["hand"]) > 0.6


def test_bad_augment_values_are_refused():
    with pytest.raises(ValueError, match="augment.blur must be a probability in \\[0, 1\\]"):
        AugmentConfig(blur=1.5).validate()
    with pytest.raises(ValueError, match="augment.gamma must be a number >= 0"):
        AugmentConfig(gamma=-1).validate()


@pytest.mark.parametrize("flags, message", [
    (["--augment", "jpeg=2"], "jpeg must be a probability in [0, 1]"),
    (["--augment", "occlude=lots"], "occlude takes a number"),
])
def test_bad_augment_flags_are_a_one_line_error(fer_root, tmp_path, capsys, flags, message):
    assert main(["train", "--data", str(fer_root), "--out", str(tmp_path / "never"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_no_augment_turns_the_photo_keys_off_too(fer_root, tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, resume=False, **kw):
        seen["augment"] = cfg.augment
        return tmp_path

    monkeypatch.setattr("emolens.training.loop.train", fake_train)
    main(["train", "--data", str(fer_root), "--out", str(tmp_path / "r"), "--no-augment", "--augment", "jpeg=0.5"])
    assert seen["augment"] == dataclasses.replace(AugmentConfig.off(), jpeg=0.5)


# ----------------------------------------------------------------------------- ONNX -> checkpoint
def _random_vgg(seed: int):
    """A vgg_s with random weights and random BatchNorm statistics, so folding them changes the convs."""
    from emolens.training.zoo import create_model

    torch.manual_seed(seed)
    model = create_model("vgg_s", num_classes=7)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_an_exported_model_comes_back_as_a_checkpoint_that_computes_the_same(faces, tmp_path):
    from emolens.classify import Classifier
    from emolens.training.export import export_onnx
    from emolens.training.from_onnx import checkpoint_from_onnx

    model = _random_vgg(0)
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    path = export_onnx(model, ModelMeta(labels=labels, architecture="vgg_s"), tmp_path / "m.onnx")
    u8 = (faces[:, 0].numpy() * 255).round().astype(np.uint8)
    ck = checkpoint_from_onnx(path, "vgg_s", u8)
    assert ck["classes"] == labels and ck["config"]["model"] == "vgg_s"
    back = _random_vgg(1)  # other weights: everything must come from the file
    back.load_state_dict(ck["model"])
    clf = Classifier(path)
    x = torch.from_numpy(clf.preprocess(list(u8)))
    with torch.no_grad():
        assert torch.allclose(back.eval()(x), torch.from_numpy(clf.logits(x.numpy())), atol=1e-4)
        # the rebuilt conv BatchNorms in training mode normalise by the batch's own statistics: on the faces
        # they were measured on, those are the stored ones, so the function is the exported one
        back.train()
        for m in back.modules():
            if isinstance(m, torch.nn.Dropout | torch.nn.BatchNorm1d):  # the head's BatchNorm is kept as it was
                m.eval()
        assert torch.allclose(back(x), model(x), atol=1e-3)


def test_a_model_of_another_architecture_is_refused_and_an_int8_one_dequantized(faces, tmp_path):
    from emolens.training.export import export_onnx, parity
    from emolens.training.from_onnx import checkpoint_from_onnx
    from emolens.training.zoo import create_model

    path = export_onnx(_random_vgg(0), ModelMeta(labels=list("abcdefg")), tmp_path / "m.onnx")
    u8 = (faces[:, 0].numpy() * 255).astype(np.uint8)
    with pytest.raises(ValueError, match="expects"):
        checkpoint_from_onnx(path, "vgg_m", u8)
    from pathlib import Path

    # an int8 file is turned back into float weights first (its 8-bit values kept): it computes nearly the same
    member = Path(__file__).resolve().parents[1] / "models" / "members" / "fer2013_vgg_s_ema.int8.onnx"
    ck = checkpoint_from_onnx(member, None, u8)
    model = create_model("vgg_s", num_classes=7)
    model.load_state_dict(ck["model"])
    assert ck["architecture"] == "vgg_s" and parity(model, member, u8) < 0.05
