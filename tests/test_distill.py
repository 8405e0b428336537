"""Knowledge distillation (``emolens train --teacher MODEL.onnx``): the teacher sees exactly the faces the
student is trained on, the loss pulls the student towards the teacher, a student taught on meaningless labels
still learns the teacher's answers, and a teacher that cannot teach gets a one-line error with no run left."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.classify import Classifier, default_model_path  # noqa: E402
from emolens.cli import main  # noqa: E402
from emolens.training.augment import AugmentConfig  # noqa: E402
from emolens.training.data import load_folder_split  # noqa: E402
from emolens.training.distill import Teacher, distillation_loss  # noqa: E402
from emolens.training.loop import TrainConfig, normalise, to_input, train  # noqa: E402

FLOAT_NET = Path(__file__).resolve().parents[1] / "models" / "members" / "emolens-fer-vgg-s.onnx"

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def test_the_teacher_scores_the_training_batch_as_predict_scores_the_faces(fer_root):
    """The loop's batch is normalised with the student's mean/std (here not the teacher's): the teacher must
    undo that and give the probabilities `emolens predict` gives for the same 48x48 faces. (A float teacher:
    an int8 one turns float rounding into visible differences, 0.01 for the bundled int8 ensemble.)"""
    faces = load_folder_split(fer_root, "val", classes=LABELS, limit_per_class=6).images  # N x 48 x 48 x 1 uint8
    cfg = TrainConfig(data="x", mean=[0.4], std=[0.3])
    batch = normalise(to_input(faces, torch.device("cpu")), cfg)
    teacher = Teacher(FLOAT_NET, classes=LABELS, input_size=48, channels=1, mean=cfg.mean, std=cfg.std)
    got = teacher.probabilities(batch).numpy()
    want = Classifier(FLOAT_NET).predict_proba(list(faces))
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert got.shape == (len(faces), 7)


def test_distillation_loss_is_zero_when_the_student_agrees_and_pulls_it_towards_the_teacher():
    teacher = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    same = teacher.log() + 3.0  # logits of the same distributions
    assert distillation_loss(same, teacher, tau=2.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(2, 3, requires_grad=True)
    loss = distillation_loss(student, teacher, tau=2.0)
    assert loss.item() > 0.05
    loss.backward()
    # gradient descent raises the logit of each row's most probable teacher class most
    assert (-student.grad).argmax(1).tolist() == [0, 2]


@pytest.fixture(scope="module")
def noise_labelled(fer_root, tmp_path_factory):
    """FER2013 faces filed under random class folders (train: 40 a class; val: real labels), as symlinks:
    labels that carry no information about the face."""
    root = tmp_path_factory.mktemp("noise")
    rng = random.Random(0)
    files = [f for c in LABELS for f in sorted((fer_root / "train" / c).iterdir())[:40]]
    rng.shuffle(files)
    for i, f in enumerate(files):
        d = root / "train" / LABELS[i % 7]
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f)
    for c in LABELS:
        (root / "val" / c).mkdir(parents=True)
        for f in sorted((fer_root / "val" / c).iterdir())[:30]:
            (root / "val" / c / f.name).symlink_to(f)
    return root


def test_a_student_taught_on_meaningless_labels_learns_the_teachers_answers(noise_labelled, tmp_path):
    still = AugmentConfig(hflip=False, rotate=0, shift=0, zoom=0, shear=0, brightness=0, contrast=0, erase=0)
    run = train(TrainConfig(data=str(noise_labelled), out=str(tmp_path / "kd"), model="vgg_s", epochs=5,
                            batch_size=32, lr=2e-3, threads=2, select="loss", augment=still,
                            teacher=str(default_model_path()), distill=1.0))
    assert "teacher: " in (run / "train.log").read_text()
    seen = load_folder_split(noise_labelled, "train", classes=LABELS)  # the faces it was taught on
    faces = list(seen.images)
    teacher = Classifier().predict_proba(faces).argmax(1)
    student = Classifier(run / "model.onnx").predict_proba(faces).argmax(1)
    agreement = float((student == teacher).mean())
    majority = np.bincount(teacher).max() / len(teacher)  # what always answering the teacher's favourite scores
    labels = float((student == seen.labels).mean())  # what it learned of the (random) labels
    assert agreement > majority + 0.25 and agreement > labels + 0.25, (agreement, majority, labels)


@pytest.mark.parametrize(("flags", "message"), [
    (["--teacher", "missing.onnx"], "teacher missing.onnx: model file not found"),
    (["--teacher", "{readme}"], "cannot load as an ONNX model"),
    (["--teacher", "{model}", "--model", "seed002_cnn"], "takes 48x48 gray faces, the student 256x256 RGB"),
    (["--teacher", "{model}", "--distill", "1.5"], "distill must be a weight in [0, 1]"),
    (["--teacher", "{model}", "--distill-temperature", "0"], "distill_temperature must be a positive number"),
])
def test_a_teacher_that_cannot_teach_gets_a_one_line_error_and_leaves_no_run(fer_root, tmp_path, capsys, flags,
                                                                             message):
    readme = tmp_path / "README.md"
    readme.write_text("not a model")
    flags = [f.format(readme=readme, model=default_model_path()) for f in flags]
    out = tmp_path / "run"
    code = main(["train", "--data", str(fer_root), "--out", str(out), "--epochs", "1", "--limit-per-class", "2",
                 *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_teacher_with_other_labels_is_refused(tmp_path, fer_root, capsys):
    """A happy/sad dataset cannot learn from a seven-emotion teacher: the labels must match by name and order."""
    root = tmp_path / "hs"
    for split in ("train", "val"):
        for c in ("happy", "sad"):
            (root / split / c).mkdir(parents=True)
            for f in sorted((fer_root / split / c).iterdir())[:3]:
                (root / split / c / f.name).symlink_to(f)
    code = main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--teacher", str(default_model_path())])
    err = capsys.readouterr().err
    assert code == 2 and "are not the data's classes ['happy', 'sad']" in err
    assert not (tmp_path / "run").exists()
