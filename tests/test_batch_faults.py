"""`emolens batch` under faults, on a local two-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU each):
a worker node lost in the middle of a run loses and duplicates nothing, and a poisoned input gets its own error
row while the rest of its unit gets faces."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from ray.cluster_utils import Cluster  # noqa: E402

from emolens.distributed.batch import list_inputs, read_results, run_batch  # noqa: E402

pytestmark = pytest.mark.slow

POISON = (77, 91)  # a picture of this height and width makes the recogniser raise (see poison_hook)


def poison_hook() -> None:
    """Run in every Ray worker: the recogniser raises on one kind of picture, as a bug or a hostile file would."""
    from emolens.recognizer import EmotionRecognizer

    real = EmotionRecognizer.predict_bgr

    def predict_bgr(self, bgr, **kw):
        if bgr.shape[:2] == POISON:
            raise RuntimeError("poisoned input")
        return real(self, bgr, **kw)

    EmotionRecognizer.predict_bgr = predict_bgr


@pytest.fixture(scope="module")
def cluster():
    import ray.cloudpickle

    ray.shutdown()  # another module's local Ray
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook travels by value to the workers
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, runtime_env={"worker_process_setup_hook": poison_hook}, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def crops(fer_root, photos_dir, tmp_path_factory) -> Path:
    """120 FER2013 val crops (small: fast to recognise), 2 real photos."""
    root = tmp_path_factory.mktemp("crops")
    for cls in sorted(p.name for p in (fer_root / "val").iterdir()):
        for f in sorted((fer_root / "val" / cls).iterdir())[:17]:
            shutil.copy(f, root / f"{cls}_{f.name}")
    for name in ("group_six.jpg", "portrait_obama.jpg"):
        shutil.copy(photos_dir / name, root / name)
    return root


def test_a_lost_worker_node_loses_and_duplicates_nothing(cluster, crops, tmp_path):
    files = list_inputs([str(crops)])
    out = tmp_path / "faces"
    result: dict = {}

    def go():
        try:
            result["summary"] = run_batch([str(crops)], out, actors=2, batch_size=4, shard_size=40,
                                          log=lambda m: None)
        except BaseException as e:  # noqa: BLE001 - looked at below
            result["error"] = e

    worker = [n for n in cluster.list_all_nodes() if n is not cluster.head_node][0]
    run = threading.Thread(target=go, daemon=True)
    run.start()
    deadline = time.time() + 120
    while len(list((out / "parts").glob("part-*"))) < 3 and time.time() < deadline and run.is_alive():
        time.sleep(0.05)
    assert run.is_alive(), f"the run ended before the node could be lost: {result}"
    cluster.remove_node(worker)  # the node and its actor, with the units it held, are gone
    cluster.add_node(num_cpus=1)  # as an autoscaler brings a new one
    run.join(timeout=240)
    assert not run.is_alive(), "the run did not finish after the node was lost"
    if "error" in result:  # the run may fail; then running it again completes it
        result["summary"] = run_batch([str(crops)], out, actors=2, batch_size=4, shard_size=40, log=lambda m: None)
    sources = read_results(out, columns=["source", "face"]).to_pylist()
    per_input = Counter(r["source"] for r in sources if r["face"] in (-1, 0))  # one first row per input
    assert per_input == Counter(files)  # every input exactly once
    faces = Counter((r["source"], r["face"]) for r in sources)
    assert max(faces.values()) == 1  # no row twice
    assert result["summary"].pictures == len(files) == 121 and result["summary"].actors >= 2
    assert not list((out / "parts").iterdir()) and len(list(out.glob("shard-*"))) == 4  # every shard merged


def test_a_poisoned_input_gets_an_error_row_and_the_rest_of_its_unit_its_faces(cluster, photos_dir, tmp_path):
    import cv2
    import numpy as np

    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("portrait_biden.jpg", "portrait_obama.jpg"):
        shutil.copy(photos_dir / name, pics / name)
    cv2.imwrite(str(pics / "poison.png"), np.full((*POISON, 3), 120, np.uint8))
    out = tmp_path / "faces"
    s = run_batch([str(pics)], out, actors=1, batch_size=16, log=lambda m: None)  # all three in one unit
    rows = {Path(r["source"]).name: r for r in read_results(out).to_pylist()}
    assert rows["poison.png"]["error"] == "poisoned input" and rows["poison.png"]["face"] == -1
    assert rows["portrait_biden.jpg"]["label"] and rows["portrait_obama.jpg"]["label"] == "happy"
    assert (s.pictures, s.faces, s.errors) == (3, 2, 1)
