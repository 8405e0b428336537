"""Vote labels (FER+): the votes CSV reader, soft targets with class weights, training on votes, and evaluation
against the majority vote (ties and non-label tops left out and counted)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from emolens.training.votes import VotesError, read_votes

LABELS = ["angry", "happy", "sad"]


def _write(path: Path, rows: list[list], header=("file", "anger", "happiness", "sadness", "contempt", "NF")) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    """``tmp/data/<class>/<n>.png`` (tiny gray images) for paths to point at."""
    import cv2

    for cls in LABELS:
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "data" / cls / f"{i}.png"), np.full((8, 8), 40 * i, np.uint8))
    return tmp_path / "data"


def test_reader_resolves_paths_normalises_columns_and_reads_weights(faces: Path, tmp_path: Path):
    csv_path = _write(faces / "votes.csv", [["angry/0.png", 7, 0, 2, 1, 0], ["happy/1.png", 0, 10, 0, 0, 0]],
                      header=("file", "anger", "happiness", "sadness", "contempt", "NF"))
    v = read_votes(csv_path)
    assert v.columns == ["angry", "happy", "sad", "contempt", "nf"]  # happiness -> happy, anger -> angry ...
    assert len(v) == 2 and not v.has_weights
    # a path relative to the CSV's folder, an absolute one and one through a symbolic link all find the row
    link = tmp_path / "link"
    link.symlink_to(faces)
    assert v.rows_of([str(faces / "angry/0.png"), str(link / "happy/1.png"), str(faces / "sad/0.png")]).tolist() \
        == [0, 1, -1]
    # elsewhere, with paths relative to the dataset folder (given as a root) and a weight column
    other = _write(tmp_path / "elsewhere.csv", [["sad/2.png", 0, 0, 4, 0, 0, 0.25]],
                   header=("file", "anger", "happiness", "sadness", "contempt", "NF", "weight"))
    w = read_votes(other, roots=[faces])
    assert w.has_weights and w.rows_of([str(faces / "sad/2.png")]).tolist() == [0]
    t, weight, keep, _ = w.targets([str(faces / "sad/2.png")], np.array([2]), LABELS)
    assert weight.tolist() == [0.25] and keep.all()


@pytest.mark.parametrize("rows, header, message", [
    ([], ("name", "anger"), "no 'file' column"),
    ([], ("file",), "no label columns"),
    ([["a.png", "x"]], ("file", "anger"), "line 2: anger is 'x', not a number"),
    ([["a.png", "-1"]], ("file", "anger"), "line 2: anger is -1, expected a number >= 0"),
    ([["a.png", "nan"]], ("file", "anger"), "expected a number >= 0"),
    ([["a.png", "inf"]], ("file", "anger"), "expected a number >= 0"),
    ([["a.png", "1", "2"]], ("file", "anger"), "line 2: 3 fields, the header has 2"),
    ([["a.png", "1"], ["a.png", "2"]], ("file", "anger"), "line 3: a.png is listed twice (also on line 2)"),
    ([["", "1"]], ("file", "anger"), "empty file name"),
    ([], ("file", "anger", "angry"), "all mean ['angry']"),
    ([], ("file", "anger"), "no rows"),
])
def test_bad_votes_files_are_one_line_errors(tmp_path: Path, rows, header, message):
    p = _write(tmp_path / "v.csv", rows, header=header)
    with pytest.raises(VotesError) as e:
        read_votes(p)
    assert message in str(e.value) and "\n" not in str(e.value) and str(p) in str(e.value)


def test_missing_empty_and_binary_votes_files(tmp_path: Path):
    for path, message in ((tmp_path / "none.csv", "no such file"), (tmp_path, "not a file")):
        with pytest.raises(VotesError, match=message):
            read_votes(path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(VotesError, match="empty file"):
        read_votes(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"file,anger\n\xff\xfe\x00\x81,1\n")
    with pytest.raises(VotesError, match="not a text CSV"):
        read_votes(tmp_path / "bin.csv")


def test_targets_drop_non_label_columns_mix_the_folder_label_and_count_what_happened(faces: Path):
    p = _write(faces / "v.csv", [
        ["angry/0.png", 6, 0, 2, 2, 0],   # contempt votes dropped: 0.75 angry, 0.25 sad
        ["happy/0.png", 0, 0, 0, 3, 7],   # only contempt and not-a-face: left out
        ["sad/0.png", 0, 5, 5, 0, 0],
    ])
    v = read_votes(p)
    files = [str(faces / f) for f in ("angry/0.png", "happy/0.png", "sad/0.png", "sad/1.png")]
    folder = np.array([0, 1, 2, 2])
    t, w, keep, stats = v.targets(files, folder, LABELS)
    np.testing.assert_allclose(t[0], [0.75, 0, 0.25])
    np.testing.assert_allclose(t[2], [0, 0.5, 0.5])
    np.testing.assert_allclose(t[3], [0, 0, 1])  # no row: its folder's label
    assert keep.tolist() == [True, False, True, True]
    assert stats == {"rows": 3, "no_row": 1, "no_label_votes": 1}
    t, *_ = v.targets(files, folder, LABELS, mix=0.5)
    np.testing.assert_allclose(t[0], [0.875, 0, 0.125])  # half votes, half the folder's angry
    np.testing.assert_allclose(t[2], [0, 0.25, 0.75])
    with pytest.raises(ValueError, match="votes_mix"):
        v.targets(files, folder, LABELS, mix=1.5)


def test_majority_leaves_out_ties_non_label_tops_and_missing_rows(faces: Path):
    p = _write(faces / "v.csv", [
        ["angry/0.png", 6, 0, 2, 2, 0],
        ["angry/1.png", 4, 0, 4, 2, 0],   # tie
        ["happy/0.png", 0, 2, 0, 5, 3],   # contempt on top
        ["happy/1.png", 0, 1, 0, 0, 9],   # not a face on top
        ["sad/0.png", 0, 6, 4, 0, 0],     # folder says sad, people say happy
    ])
    files = [str(faces / f) for f in ("angry/0.png", "angry/1.png", "happy/0.png", "happy/1.png", "sad/0.png",
                                      "sad/1.png")]
    y, left = read_votes(p).majority(files, LABELS)
    assert y.tolist() == [0, -1, -1, -1, 1, -1]
    assert left == {"tie": 1, "top_contempt": 1, "top_nf": 1, "no_row": 1}


def test_soft_cross_entropy_moves_a_tiny_net_to_the_votes_and_class_weights_tilt_it():
    """The optimum of -sum_c w_c t_c log p_c is p_c proportional to w_c t_c: without weights a net learns the
    vote distribution itself; with weights the rare class gets its weighted share."""
    torch = pytest.importorskip("torch")
    from emolens.training.loop import soft_cross_entropy

    torch.manual_seed(0)
    x = torch.randn(64, 5)
    target = torch.tensor([[0.7, 0.2, 0.1]]).repeat(64, 1)
    ones, no_pair = torch.ones(64), torch.arange(64)
    for weight in (None, torch.tensor([1.0, 1.0, 3.0])):
        net = torch.nn.Linear(5, 3)
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(400):
            loss = soft_cross_entropy(net(x), target, ones, weight, 0.0, no_pair, 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        p = torch.softmax(net(x), 1).mean(0)
        want = target[0] * (1 if weight is None else weight)
        torch.testing.assert_close(p, want / want.sum(), atol=0.01, rtol=0)
    # a face's weight of 0 takes it out of the loss
    logits = torch.zeros(2, 3, requires_grad=True)
    t = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    soft_cross_entropy(logits, t, torch.tensor([1.0, 0.0]), None, 0.0, torch.arange(2), 1.0).backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


@pytest.mark.slow
def test_training_on_ferplus_votes_and_evaluating_against_their_majority(fer_root: Path, tmp_path: Path, capsys):
    pytest.importorskip("torch")
    from emolens.cli import main
    from fer_subsets import fer_subset

    votes = fer_root / "ferplus.csv"
    data = fer_subset(fer_root, tmp_path / "data", {"train": {"happy": 60, "neutral": 60, "sad": 60},
                                                    "val": {"happy": 30, "neutral": 30, "sad": 30}})
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--votes", str(votes), "--votes-mix", "0.25", "--class-weights",
                 "sqrt", "--epochs", "1", "--batch-size", "32", "--out", str(run), "--precision", "fp32"]) == 0
    log = (run / "train.log").read_text()
    assert "180 of 180 training faces have a row" in log
    assert "columns ['surprise', 'angry', 'disgust', 'fear', 'contempt', 'unknown', 'nf'] are not labels" in log
    assert "target = 0.75 x votes + 0.25 x folder label" in log
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_votes_acc" in header
    assert json.loads((run / "config.json").read_text())["votes"] == str(votes)
    capsys.readouterr()
    # the same faces scored against the votes' majority: the report says how many and what was left out
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--data", str(data), "--votes", str(votes), "--out", str(out),
                 "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    v = report["votes"]
    assert v["total"] == 90 and v["scored"] == report["n"] < 90
    assert sum(v["left_out"].values()) == 90 - v["scored"]
    assert set(v["left_out"]) <= {"tie", "no_row"} | {f"top_{c}" for c in
                                                      ("angry", "disgust", "fear", "surprise", "contempt",
                                                       "unknown", "nf")}
    assert 0.3 < v["folder_label_agrees"] < 1  # FER+ disagrees with FER2013 on some faces
    assert "Truth: the majority of the votes" in (out / "report.md").read_text()


def test_cli_votes_errors_are_one_line(fer_root: Path, tmp_path: Path, capsys):
    from emolens.cli import main

    bad = _write(tmp_path / "bad.csv", [["x.png", "many"]], header=("file", "anger"))
    for argv in (["evaluate", "default", "--data", str(fer_root), "--votes", str(bad), "--limit-per-class", "1"],
                 ["evaluate", "default", "--data", str(fer_root), "--votes", str(tmp_path / "none.csv")],
                 ["evaluate", "default", "--data", str(fer_root), "--votes", str(bad), "--detect"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("emolens: error:") and "\n" not in err and "Traceback" not in err
    pytest.importorskip("torch")
    assert main(["train", "--data", str(fer_root), "--votes", str(bad), "--limit-per-class", "2", "--epochs", "1",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "line 2: anger is 'many', not a number" in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # a run that failed before its first epoch leaves nothing behind
    assert main(["train", "--data", str(fer_root), "--votes-mix", "2", "--limit-per-class", "2",
                 "--out", str(tmp_path / "r")]) == 2
    assert "votes_mix must be in [0, 1]" in capsys.readouterr().err
