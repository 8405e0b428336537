"""Explanation maps: shape and content, the sanity check on real FER2013 val faces (occluding where the
map points hurts the prediction more than occluding a random place), `emolens explain`, and Grad-CAM."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens import EmotionRecognizer, load_image
from emolens.cli import main
from emolens.evaluation.explain_check import region_drops
from emolens.explain.files import output_files
from emolens.explain.maps import bar_entries, saliency

IMAGE_EXT = {".jpg", ".jpeg", ".png"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rec() -> EmotionRecognizer:
    return EmotionRecognizer(threads=2)


def val_faces(fer_root: Path, per_class: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    files: list[Path] = []
    for c in sorted(p for p in (fer_root / "val").iterdir() if p.is_dir()):
        pool = sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_EXT)
        files += [pool[i] for i in rng.choice(len(pool), min(per_class, len(pool)), replace=False)]
    return files


# ----------------------------------------------------------------------------- the maps
@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_one_map_per_face_with_the_crops_shape_and_real_structure(rec, photos_dir, method):
    explanations = rec.explain(photos_dir / "group_six.jpg", method=method)
    faces = rec.predict(photos_dir / "group_six.jpg")
    assert [e.face for e in explanations] == faces  # same faces, same order, same probabilities as predict
    for ex in explanations:
        assert ex.label == ex.face.label and ex.method == method
        assert ex.heatmap.shape == ex.crop.shape[:2] and ex.heatmap.dtype == np.float32
        assert ex.crop.ndim == 3 and ex.crop.shape[2] == 3
        assert 0.0 <= ex.heatmap.min() and ex.heatmap.max() <= 1.0 and ex.heatmap.max() > 0.99
        assert ex.heatmap.std() > 0.1  # not flat: some regions matter, others do not
        # not one hot pixel either: at least 5% of the crop is warm, and at least 20% is cool
        assert 0.05 < (ex.heatmap > 0.5).mean() < 0.8
        assert ex.overlay().shape == ex.crop.shape
        panel = ex.panel()
        assert panel.shape[0] == 240 and panel.shape[1] > 3 * 240


def test_other_label_and_bad_arguments(rec, photos_dir):
    img = load_image(photos_dir / "portrait_obama.jpg")
    happy = rec.explain(img)[0]
    sad = rec.explain(img, label="sad")[0]
    assert happy.label == "happy" and sad.label == "sad" and sad.face.label == "happy"
    assert not np.allclose(happy.heatmap, sad.heatmap)  # a different question gives a different map
    with pytest.raises(ValueError, match="unknown label 'joy'.*angry"):
        rec.explain(img, label="joy")
    with pytest.raises(ValueError, match="unknown explanation method 'lime'"):
        rec.explain(img, method="lime")
    from emolens import ImageError

    with pytest.raises(ImageError):
        rec.explain(b"not an image")


def test_the_map_explains_the_model_a_crop_and_its_mirror_give_mirrored_maps(rec, fer_root):
    crop = load_image(val_faces(fer_root, 1)[3])
    k = rec.labels.index(rec.predict(crop, detect=False)[0].label)
    heat = saliency(rec.classifier, crop, k)
    mirrored = saliency(rec.classifier, np.ascontiguousarray(crop[:, ::-1]), k)
    # the model averages each view with its mirror image, so it is mirror-symmetric; so are its maps
    assert np.corrcoef(heat.ravel(), mirrored[:, ::-1].ravel())[0, 1] > 0.9


@pytest.mark.slow
def test_occluding_the_top_region_hurts_more_than_a_random_region_on_real_val_faces(fer_root):
    """The sanity check of issue 7 on 210 FER2013 val faces (30 per class): hide a third of the crop at the
    map's hottest place vs at random places; the predicted class must drop clearly more at the hot place,
    on most faces. The docs report the same measurement over 300 faces (benchmarks/explain_sanity.py). Run with
    `fast`: the check is of the maps, whichever model they explain, and `fast` takes a sixth of the time (this
    was the suite's slowest test, 472 s on a busy 2-core AVX2 machine with the default)."""
    rec = EmotionRecognizer("fast", threads=2)
    rng = np.random.default_rng(0)
    rows, control = [], []
    for f in val_faces(fer_root, 30):
        ex = rec.explain_bgr(load_image(f), detect=False)[0]
        rows.append(region_drops(rec, ex, rng=rng, n_random=3))
        shuffled = rng.permutation(ex.heatmap.ravel()).reshape(ex.heatmap.shape)
        control.append(region_drops(rec, ex, rng=rng, n_random=3, heatmap=shuffled))

    def passes(rows: list[dict[str, float]]) -> tuple[bool, bool, bool]:
        top, rand, least = (np.array([r[k] for r in rows]) for k in ("top", "random", "least"))
        return top.mean() > 2 * rand.mean() > 0, (top > rand).mean() > 0.75, least.mean() < rand.mean()

    assert len(rows) == 210
    assert passes(rows) == (True, True, True), [{k: round(v, 3) for k, v in r.items()} for r in rows[:5]]
    # the check can fail: a map that knows nothing (the same map, pixels shuffled) fails its two main
    # criteria (coldest vs random is a coin toss for it, so that one is not asserted)
    assert passes(control)[:2] == (False, False)


def test_a_very_confident_face_still_gets_a_map_pointing_at_the_smile(rec):
    """examples/obama.jpg is 90% happy: hiding any small patch moves that probability by a hundredth or
    less. The occlusion map works in log-odds with a second, larger patch, so it still finds the smile
    (the mouth, lower middle of the crop) instead of min-max-scaled noise on hair and background."""
    ex = rec.explain(ROOT / "examples" / "obama.jpg")[0]
    assert ex.label == "happy" and ex.face.score > 0.85
    heat = ex.heatmap
    h, w = heat.shape
    ys, xs = np.nonzero(heat > 0.5)
    assert len(ys) > 0.02 * h * w
    # within the mouth's span (the distilled default's hot region sits a little right of the middle: 0.63)
    assert 0.65 < ys.mean() / h < 0.9 and 0.35 < xs.mean() / w < 0.65, (ys.mean() / h, xs.mean() / w)
    mouth = heat[int(0.6 * h) : int(0.9 * h), int(0.3 * w) : int(0.7 * w)].mean()
    hair = heat[: int(0.2 * h)].mean()
    sides = np.r_[heat[:, : int(0.12 * w)].ravel(), heat[:, int(0.88 * w) :].ravel()].mean()
    # CenterFace's box of this portrait is taller than wide, so its square crop holds more hair and
    # background than Haar's did: the map's floor there was 0.11 against 0.89 on the mouth with 0.1's first
    # single-net default, 0.22 against 0.89 with 0.1's three-net ensemble; the distilled default gives the mouth
    # 0.76, the hair 0.21 and the sides 0.30 (measured), still well below the mouth
    assert mouth > 0.6 and hair < mouth / 3 and sides < mouth / 2, (mouth, hair, sides)


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_a_large_crop_is_explained_in_bounded_time(rec, method):
    """The model sees 48 px: a 1600-px crop must not cost more than a small one (it took 20+ s before the
    perturbations were made at a working size). Loose bound for a loaded 2-core machine."""
    img = load_image(ROOT / "examples" / "obama.jpg")
    face = rec.predict_bgr(img)[0]
    b = face.box
    crop = cv2.resize(img[b.y : b.y + b.h, b.x : b.x + b.w], (1600, 1600), interpolation=cv2.INTER_CUBIC)
    t = time.perf_counter()
    heat = saliency(rec.classifier, crop, rec.labels.index("happy"), method=method)
    seconds = time.perf_counter() - t
    assert heat.shape == (1600, 1600) and heat.dtype == np.float32 and heat.max() > 0.99
    # RISE runs 640 model inputs whatever the crop's size (about half a second idle): a looser bound
    assert seconds < (5 if method == "occlusion" else 10), seconds
    small = saliency(rec.classifier, cv2.resize(crop, (200, 200), interpolation=cv2.INTER_AREA),
                     rec.labels.index("happy"), method=method)
    # the same picture at another size gives the same map
    assert np.corrcoef(cv2.resize(heat, (200, 200), interpolation=cv2.INTER_AREA).ravel(), small.ravel())[0, 1] > 0.9


def test_a_wide_image_without_detection_is_quick(rec):
    """?detect=false with a 400×1600 image used to hang a server thread for 40 s."""
    img = cv2.resize(load_image(ROOT / "examples" / "obama.jpg"), (1600, 400))
    t = time.perf_counter()
    ex = rec.explain_bgr(img, detect=False)[0]
    assert time.perf_counter() - t < 5
    assert ex.heatmap.shape == ex.crop.shape[:2]


def test_the_panel_shows_the_explained_emotion_even_when_it_is_not_in_the_top_three(rec, photos_dir):
    img = load_image(ROOT / "examples" / "obama.jpg")
    happy = rec.explain(img)[0]
    sad = rec.explain(img, label="sad")[0]
    assert [n for n, _ in bar_entries(happy.face, "happy")] == [n for n, _ in bar_entries(sad.face, "happy")]
    top3 = sorted(sad.face.scores, key=sad.face.scores.get, reverse=True)[:3]
    assert "sad" not in top3
    assert [n for n, _ in bar_entries(sad.face, "sad")] == [*top3, "sad"]
    assert bar_entries(sad.face, "sad")[-1][1] == sad.face.scores["sad"]
    assert len(bar_entries(happy.face, "happy")) == 3
    a, b = happy.panel(), sad.panel()
    assert a.shape == b.shape and a.shape[0] == 240
    w = 240
    # the bars tile differs (a fourth bar); the crop tile is the same crop with the same caption
    assert np.array_equal(a[:, :w], b[:, :w]) and not np.array_equal(a[:, 2 * w :], b[:, 2 * w :])
    assert not np.array_equal(a[:20, :w], cv2.resize(happy.crop, (w, w), interpolation=cv2.INTER_AREA)[:20])  # caption


# ----------------------------------------------------------------------------- emolens explain
def test_explain_command_writes_crop_overlay_and_panel_per_face(photos_dir, tmp_path, capsys):
    out = tmp_path / "why"
    code = main(["explain", str(photos_dir / "portrait_obama.jpg"), str(photos_dir / "group_six.jpg"),
                 "--out", str(out), "--threads", "2"])
    stdout = capsys.readouterr().out
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert "portrait_obama-face1-crop.png" in names
    assert "portrait_obama-face1-happy-occlusion.png" in names
    assert "portrait_obama-face1-happy-occlusion-panel.png" in names
    group_panels = [n for n in names if n.startswith("group_six-") and n.endswith("-panel.png")]
    assert 5 <= len(group_panels) <= 7
    assert len(names) == 3 * (1 + len(group_panels))
    crop = cv2.imread(str(out / "portrait_obama-face1-crop.png"))
    overlay = cv2.imread(str(out / "portrait_obama-face1-happy-occlusion.png"))
    assert crop.shape == overlay.shape and not np.array_equal(crop, overlay)
    assert "portrait_obama.jpg face 1: happy" in stdout and "-panel.png" in stdout


def test_explain_command_label_never_overwrites_and_bad_input(photos_dir, tmp_path, capsys):
    out = tmp_path / "why"
    portrait = str(photos_dir / "portrait_obama.jpg")
    assert main(["explain", portrait, "--out", str(out), "--label", "surprise"]) == 0
    capsys.readouterr()
    written = out / "portrait_obama-face1-surprise-occlusion-panel.png"
    before = written.read_bytes()
    # the same run again: every file already holds exactly what it would get, nothing to refuse or rewrite
    assert main(["explain", portrait, "--out", str(out), "--label", "surprise"]) == 0
    assert written.read_bytes() == before
    capsys.readouterr()
    written.write_bytes(b"the user's own edit")  # a different file under that name is never replaced:
    assert main(["explain", portrait, "--out", str(out), "--label", "surprise"]) == 1  # that picture's error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err and "Traceback" not in err
    assert written.read_bytes() == b"the user's own edit"
    assert main(["explain", portrait, "--out", str(out), "--label", "surprise", "--force"]) == 0
    assert written.read_bytes() == before
    capsys.readouterr()

    assert main(["explain", portrait, "--out", str(out), "--label", "joy"]) == 2
    assert "not one of this model's labels" in capsys.readouterr().err

    bad = tmp_path / "broken.jpg"
    bad.write_text("not a jpeg")
    code = main(["explain", str(bad), portrait, "--out", str(tmp_path / "o2")])
    captured = capsys.readouterr()
    assert code == 1 and "broken.jpg" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "o2" / "portrait_obama-face1-happy-occlusion-panel.png").is_file()  # the good one still done

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["explain", portrait, "--out", str(a_file)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["explain", portrait, "--method", "gradcam", "--out", str(tmp_path / "o3")]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_the_readme_workflow_label_and_method_into_the_same_folder(tmp_path, capsys):
    """README: explain, then --label sad, then --method rise into the same folder. The crop does not
    depend on label or method: an identical crop already there is left alone, a different file is not."""
    out = tmp_path / "why"
    obama = str(ROOT / "examples" / "obama.jpg")
    assert main(["explain", obama, "--out", str(out)]) == 0
    crop = out / "obama-face1-crop.png"
    crop_bytes, crop_mtime = crop.read_bytes(), crop.stat().st_mtime_ns
    assert main(["explain", obama, "--label", "sad", "--out", str(out)]) == 0
    assert main(["explain", obama, "--method", "rise", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "already exists" not in err
    assert sorted(p.name for p in out.iterdir()) == [
        "obama-face1-crop.png",
        "obama-face1-happy-occlusion-panel.png", "obama-face1-happy-occlusion.png",
        "obama-face1-happy-rise-panel.png", "obama-face1-happy-rise.png",
        "obama-face1-sad-occlusion-panel.png", "obama-face1-sad-occlusion.png",
    ]
    assert crop.read_bytes() == crop_bytes and crop.stat().st_mtime_ns == crop_mtime  # not rewritten
    # a different file under the crop's name is still never replaced, and nothing else is written
    crop.write_bytes(b"my own file")
    assert main(["explain", obama, "--label", "angry", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "obama-face1-crop.png already exists" in err and "Traceback" not in err
    assert crop.read_bytes() == b"my own file"
    assert not (out / "obama-face1-angry-occlusion.png").exists()


def test_two_inputs_with_the_same_name_are_refused_not_overwritten(photos_dir, tmp_path, capsys):
    a, b = tmp_path / "a" / "face.jpg", tmp_path / "b" / "face.jpg"
    for p, src in ((a, "portrait_obama3.jpg"), (b, "portrait_obama.jpg")):
        p.parent.mkdir()
        p.write_bytes((photos_dir / src).read_bytes())
    assert main(["explain", str(a), str(b), "--out", str(tmp_path / "out"), "--no-detect"]) == 2
    assert "same file name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_output_file_names(rec, photos_dir, tmp_path):
    ex = rec.explain(photos_dir / "portrait_obama.jpg", method="rise")
    files = output_files(ex, "x/photo.jpg", tmp_path)
    assert [p.name for p, _ in files] == ["photo-face1-crop.png", "photo-face1-happy-rise.png",
                                          "photo-face1-happy-rise-panel.png"]


# ----------------------------------------------------------------------------- Grad-CAM ([train] extra)
@pytest.fixture(scope="module")
def run_dir(fer_root, tmp_path_factory):
    """A short real run on happy vs. surprise FER2013 faces (a model that has learned something to explain)."""
    pytest.importorskip("torch")
    from emolens.training.loop import TrainConfig, train

    root = tmp_path_factory.mktemp("happy_surprise")
    for split, n in (("train", 300), ("val", 60)):
        for cls in ("happy", "surprise"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((fer_root / split / cls).iterdir())[:n]:
                (root / split / cls / f.name).symlink_to(f)
    out = tmp_path_factory.mktemp("gradcam") / "run"
    cfg = TrainConfig(data=str(root), out=str(out), model="vgg_s", epochs=6, batch_size=64, seed=0,
                      tensorboard=False)
    return train(cfg)


@pytest.mark.slow
def test_gradcam_on_a_checkpoint(run_dir, fer_root):
    from emolens.training.gradcam import GradCAM

    cam = GradCAM.from_checkpoint(run_dir)  # a run folder means its best.pt
    rec = EmotionRecognizer(run_dir / "model.onnx")
    assert cam.labels == rec.labels == ["happy", "surprise"]
    assert cam.check_matches(rec.classifier) < 1e-4  # the checkpoint is the exported network
    files = sorted((fer_root / "val" / "surprise").iterdir())[100:110]
    maps = []
    for f in files:
        crop = load_image(f)
        face = rec.predict(crop, detect=False)[0]
        heat = cam.heatmap(crop, face.label)
        assert heat.shape == crop.shape[:2] and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() <= 1
        maps.append(heat)
    live = [m for m in maps if m.max() > 0.99 and m.std() > 0.05]
    assert len(live) >= 8  # the predicted class has positive evidence somewhere on (nearly) every face
    ex = rec.explain(load_image(files[0]), detect=False, method=cam)[0]
    assert ex.method == "gradcam" and ex.heatmap.shape == ex.crop.shape[:2]
    with pytest.raises(ValueError, match="unknown label"):
        cam.heatmap(ex.crop, "joy")


@pytest.mark.slow
def test_gradcam_from_the_command_line(run_dir, photos_dir, tmp_path, capsys):
    out = tmp_path / "cam"
    args = ["explain", str(photos_dir / "portrait_obama3.jpg"), "--out", str(out), "--method", "gradcam",
            "--checkpoint", str(run_dir / "best.pt"), "--model", str(run_dir / "model.onnx")]
    assert main(args) == 0
    assert any(p.name.endswith("-gradcam-panel.png") for p in out.iterdir())
    capsys.readouterr()
    # the checkpoint must belong to --model: the bundled 7-class model with this 2-class checkpoint is refused
    assert main([*args[:-2], "--out", str(tmp_path / "c1")]) == 2
    assert "are not the model's" in capsys.readouterr().err
    # a checkpoint with the right labels that is another network: refused, not a map of the wrong model
    torch = pytest.importorskip("torch")
    ck = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    gen = torch.Generator().manual_seed(1)
    ck["model"] = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                   for k, v in ck["model"].items()}
    torch.save(ck, tmp_path / "other.pt")
    assert main([*args[:-4], "--checkpoint", str(tmp_path / "other.pt"), "--out", str(tmp_path / "c0"),
                 "--model", str(run_dir / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert "is not the network of this model" in err and "differ by up to" in err and "Traceback" not in err
    assert not (tmp_path / "c0").exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    assert main([*args[:-4], "--checkpoint", str(junk), "--out", str(tmp_path / "c2")]) == 2
    assert "not an emolens training checkpoint" in capsys.readouterr().err
    assert main([*args[:-4], "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "c3")]) == 2
    assert "not found" in capsys.readouterr().err


def test_gradcam_on_a_frozen_transfer_backbone(tmp_path):
    torch = pytest.importorskip("torch")
    from emolens.modelmeta import ModelMeta
    from emolens.training.gradcam import GradCAM
    from emolens.training.zoo import create_model

    torch.manual_seed(0)
    model = create_model("mobilenet_v2", num_classes=2)  # base frozen: Grad-CAM must still reach its last conv
    meta = ModelMeta(labels=["happy", "sad"], input_size=96, channels=3, mean=[0.485, 0.456, 0.406],
                     std=[0.229, 0.224, 0.225], architecture="mobilenet_v2")
    crop = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    heat = GradCAM(model, meta).heatmap(crop, "sad")
    assert heat.shape == (80, 80) and np.isfinite(heat).all()
    assert all(not p.requires_grad for p in model.base.parameters())  # still frozen afterwards


def test_explain_needs_no_torch(tmp_path):
    """The inference install explains too: importing and running emolens.explain.maps never loads torch."""
    import subprocess

    code = ("import sys; from emolens import EmotionRecognizer; import numpy as np; "
            "r = EmotionRecognizer(threads=1); "
            "ex = r.explain(np.full((48, 48), 128, np.uint8), detect=False)[0]; "
            "print(ex.heatmap.shape, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == "False"



# ----------------------------------------------------------------------------- REST API
def test_rest_api_explain_label_method_and_panel(photos_dir, tmp_path):
    """?explain=true&label=...&method=... against a real `emolens serve`; bad values are JSON 422 errors."""
    pytest.importorskip("fastapi")
    import http.client
    import json
    from urllib.parse import urlsplit

    from emolens.server.launch import serve_subprocess

    crop = (photos_dir / "aligned_crop_112.png").read_bytes()

    def post(srv, query: str) -> tuple[int, dict]:
        u = urlsplit(srv.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.request("POST", "/v1/predict?" + query, body=crop, headers={"Content-Type": "image/png"})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def image(url: str) -> np.ndarray:
        import base64

        assert url.startswith("data:image/png;base64,")
        return cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)

    log = tmp_path / "server.log"
    with serve_subprocess(["--concurrency", "1"], log_path=log) as srv:
        st, data = post(srv, "explain=true&detect=false&label=sad&method=rise")
        assert st == 200, data
        (face,) = data["faces"]
        e = face["explanation"]
        assert e["label"] == "sad" and e["method"] == "rise" and face["label"] != "sad"
        overlay = image(e["overlay"])
        assert overlay.ndim == 3 and overlay.shape[0] == overlay.shape[1] >= 112
        assert image(e["panel"]).shape[0] == 240 and image(e["panel"]).shape[1] > 3 * 240
        st, data = post(srv, "explain=true&detect=false")
        assert st == 200 and data["faces"][0]["explanation"]["method"] == "occlusion"
        assert data["faces"][0]["explanation"]["label"] == data["faces"][0]["label"]
        for query, words in (("explain=true&label=joy", ["label", "'joy'", "happy"]),
                             ("explain=true&method=lime", ["method", "'lime'", "occlusion"])):
            st, data = post(srv, query)
            assert st == 422 and set(data) == {"error"}, data
            assert data["error"]["code"] == "invalid_parameter"
            assert all(w in data["error"]["message"] for w in words), data
    assert "Traceback" not in log.read_text()


def test_explain_prints_each_picture_as_it_is_done_in_json_lines_with_a_face_cap(photos_dir, tmp_path, capsys):
    """--jsonl: one object per picture (faces with their explanation files), an unreadable one in its place
    with its error; --max-faces 2 explains the two largest faces of the group photo only."""
    bad = tmp_path / "broken.jpg"
    bad.write_text("not a jpeg")
    out = tmp_path / "why"
    code = main(["explain", str(photos_dir / "portrait_obama3.jpg"), str(bad), str(photos_dir / "group_six.jpg"),
                 "--out", str(out), "--jsonl", "--max-faces", "2", "--threads", "2"])
    captured = capsys.readouterr()
    items = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1 and [len(i["faces"]) for i in items] == [1, 0, 2]
    assert items[1]["error"].startswith(f"{bad}: cannot decode image") and captured.err.count("\n") == 1
    for face in items[0]["faces"] + items[2]["faces"]:
        ex = face["explanation"]
        assert ex["method"] == "occlusion" and ex["label"] == face["label"]
        assert all(Path(ex[k]).is_file() for k in ("crop", "overlay", "panel"))
    assert len(list(out.iterdir())) == 9


def test_explain_shows_progress_on_a_terminal(photos_dir, tmp_path):
    from terminal import run_with_terminal_stderr

    crop = photos_dir / "aligned_crop_112.png"
    inputs = []
    for i in range(3):
        inputs.append(tmp_path / f"c{i}.png")
        inputs[-1].write_bytes(crop.read_bytes())
    cmd = [sys.executable, "-m", "emolens", "explain", *map(str, inputs), "--no-detect", "--out", str(tmp_path / "o")]
    code, out, seen = run_with_terminal_stderr(cmd, tmp_path)
    assert code == 0 and out.count(" face 1: ") == 3
    assert "picture 3/3 100%" in seen and "pictures/s" in seen and "ETA" in seen, seen
    code, _, seen = run_with_terminal_stderr([*cmd, "--quiet", "--force"], tmp_path)
    assert code == 0 and "pictures/s" not in seen


# ----------------------------------------------------------------------------- from Python, one call
def test_explain_files_over_a_folder_is_one_call_from_python(photos_dir, tmp_path):
    """What `emolens explain FOLDER` does, from Python: the pictures of a folder, each face's three PNGs, a picture
    that cannot be read gets its error and the others go on; bad requests are one-line ExplainErrors, checked
    before any picture is explained."""
    from emolens.explain import ExplainError, explain_files

    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("portrait_obama.jpg", "portrait_biden.jpg"):
        (folder / name).write_bytes((photos_dir / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    fast = EmotionRecognizer("fast", threads=2)
    job = explain_files(fast, [folder], tmp_path / "maps", max_faces=1)
    assert len(job) == 3
    pictures = {Path(p.file).name: p for p in job}
    assert pictures["broken.jpg"].error and not pictures["broken.jpg"].faces
    for name in ("portrait_obama.jpg", "portrait_biden.jpg"):
        (face,) = pictures[name].faces
        assert pictures[name].error is None and face["label"] in fast.labels
        for key in ("crop", "overlay", "panel"):
            assert Path(face["explanation"][key]).is_file()
    assert pictures["portrait_obama.jpg"].to_dict()["faces"][0]["explanation"]["method"] == "occlusion"
    assert len(list((tmp_path / "maps").iterdir())) == 6
    # again into the same folder: nothing is overwritten, each picture says why
    again = list(explain_files(fast, [folder / "portrait_obama.jpg"], tmp_path / "maps", label="sad", max_faces=1))
    assert again[0].faces and again[0].error is None  # another label: other files, the same crop left as it was
    (tmp_path / "file").write_text("x")
    (tmp_path / "nothing").mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "portrait_obama.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    for inputs, out, kw, message in [
        ([folder], tmp_path / "maps", {"label": "joy"}, "not one of this model's labels"),
        ([folder], tmp_path / "file", {}, "exists and is not a folder"),
        ([tmp_path / "nothing"], tmp_path / "m2", {}, "no image files found"),
        ([folder, other], tmp_path / "m3", {}, "same file name"),
        ([folder], tmp_path / "m4", {"method": "magic"}, "unknown explanation method"),
    ]:
        with pytest.raises(ExplainError, match=message):
            explain_files(fast, inputs, out, **kw)
    assert not (tmp_path / "m3").exists() and not (tmp_path / "m4").exists()
