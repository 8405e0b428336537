"""`emolens batch` on Ray Data (a local Ray with one actor here): one Parquet row per face, a row for a picture
without a face and for one that cannot be read, shards that a re-run skips, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from emolens.cli import main  # noqa: E402
from emolens.distributed.batch import BatchError, list_inputs, read_results, run_batch  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pictures(photos_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pics")
    for name in ("group_six.jpg", "portrait_obama.jpg", "portrait_biden.jpg"):
        shutil.copy(photos_dir / name, root / name)
    (root / "broken.jpg").write_text("not a picture")
    blank = root / "sub"
    blank.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(blank / "wall.png"), np.full((120, 160, 3), 200, np.uint8))  # no face on it
    return root


def test_every_face_becomes_a_row_and_bad_inputs_rows_of_their_own(pictures, tmp_path):
    out = tmp_path / "faces"
    s = run_batch([str(pictures), str(tmp_path / "gone.jpg")], out, actors=1, shard_size=3, log=lambda m: None)
    assert (s.pictures, s.faces, s.no_face, s.errors, s.shards_done) == (6, 8, 1, 2, 2)
    rows = read_results(out).to_pylist()
    by_source = {}
    for r in rows:
        by_source.setdefault(Path(r["source"]).name, []).append(r)
    assert [r["face"] for r in by_source["group_six.jpg"]] == [0, 1, 2, 3, 4, 5]
    (obama,) = by_source["portrait_obama.jpg"]
    assert obama["label"] == "happy" and len(obama["landmarks"]) == 5 and obama["model"] == "emolens-wild-ens3-int8"
    labels = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert abs(sum(obama[f"p_{k}"] for k in labels) - 1) < 1e-3 and obama[f"p_{obama['label']}"] == obama["score"]
    (broken,) = by_source["broken.jpg"]
    assert broken["face"] == -1 and "cannot decode" in broken["error"] and "bytes>" not in broken["error"]
    assert by_source["gone.jpg"][0]["error"] == "no such file"
    (wall,) = by_source["wall.png"]
    assert wall["face"] == -1 and wall["error"] is None and wall["label"] is None


def test_a_rerun_skips_finished_shards_and_clears_an_interrupted_one(pictures, tmp_path):
    out = tmp_path / "faces"
    args = ([str(pictures)], out)
    first = run_batch(*args, actors=1, shard_size=2, log=lambda m: None)
    shutil.rmtree(out / "shard-00001")  # as if the run had been stopped inside shard 2 ...
    (out / ".shard-00001").mkdir()  # ... leaving its unfinished folder
    lines = []
    again = run_batch(*args, actors=1, shard_size=2, log=lines.append)
    assert again.shards_done == 1 and again.shards_skipped == 2 and not (out / ".shard-00001").exists()
    assert (again.pictures, again.faces, again.errors) == (first.pictures, first.faces, first.errors)
    assert run_batch(*args, actors=1, shard_size=2, log=lines.append).shards_done == 0
    assert "already" in lines[-1]
    with pytest.raises(BatchError, match="other inputs"):
        run_batch([str(pictures / "group_six.jpg")], out, actors=1, shard_size=2, log=lambda m: None)


def test_inputs_and_the_command_line(pictures, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my pictures\n{pictures / 'group_six.jpg'}\n\ns3://bucket/a.jpg\n")
    assert list_inputs([str(listing), str(pictures / "*.jpg")])[:2] == [str(pictures / "group_six.jpg"),
                                                                      "s3://bucket/a.jpg"]
    assert main(["batch", str(tmp_path / "none-*.jpg"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no file matches" in err and "Traceback" not in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    assert main(["batch", str(pictures), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "mine.txt").read_text() == "keep"
    assert main(["batch", str(pictures / "group_six.jpg"), "--out", str(tmp_path / "one"), "--actors", "1"]) == 0
    assert "1 pictures, 6 faces" in capsys.readouterr().out


def test_two_actors_on_two_cores_do_not_starve_reading_and_writing(pictures, tmp_path):
    """Actors that take every CPU once left the read and write tasks no CPU to run on: the run stalled for good.
    Reading and writing take no CPU slot now. (A subprocess with a timeout, so a stall fails instead of hanging.)"""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "emolens", "batch", str(pictures), "--out", str(tmp_path / "two"),
                        "--actors", "2", "--num-cpus", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # 1: the broken picture is an error row
    assert "5 pictures, 8 faces" in r.stdout
