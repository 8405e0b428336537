"""Load test of `emolens serve` with heavy requests in flight: do ordinary requests still get answered?

    python benchmarks/serve_heavy.py [--clients 4] [--requests 50] [--heavy-clients 2] [--concurrency 2]
                                     [-- extra emolens serve flags]

Starts the server as `emolens serve --concurrency 2` would run (loopback, a free port), then, at the same time:

- ``--heavy-clients`` threads send, one after the other for as long as the ordinary load lasts,
  ``POST /v1/predict?explain=true`` with a photo of 144 faces (a 12 x 12 mosaic of the faces in
  ../shared/photos, made here; the issue's case: 201 s and 36 MB per answer before the caps);
- ``--clients`` threads send ``--requests`` ordinary ``POST /v1/predict`` each with portrait_obama.jpg.

Prints, for each kind: requests, answers by status (429: an explanation was already being made), latency
p50/p95/max; and the server's resident memory (RSS) after the warm-up, after the run and after 5 s idle.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit

import cv2
import numpy as np

from common import cpu_description
from emolens.server.launch import serve_subprocess
from serve_load import PHOTO, percentile, rss_mb, run_load

PHOTOS = PHOTO.parent


def crowd_photo(n: int = 12, cell: int = 160) -> bytes:
    """An n x n mosaic (JPEG) of the faces in the shared photos, cut out by the bundled recogniser."""
    from emolens import EmotionRecognizer

    rec = EmotionRecognizer()
    faces = []
    for name in ("group_six.jpg", "portrait_obama.jpg", "portrait_obama2.jpg", "portrait_obama3.jpg",
                 "portrait_biden.jpg"):
        img = cv2.imread(str(PHOTOS / name))
        for f in rec.predict_bgr(img):
            x, y, w, h = f.box.as_list()
            half = int(0.85 * max(w, h))
            cx, cy = x + w // 2, y + h // 2
            faces.append(cv2.resize(img[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half], (cell, cell)))
    mosaic = np.full((n * cell, n * cell, 3), 128, np.uint8)
    for i in range(n * n):
        face = faces[i % len(faces)]
        r, c = divmod(i, n)
        flip = (i // len(faces)) % 2  # every other round mirrored
        mosaic[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = face[:, ::-1] if flip else face
    return cv2.imencode(".jpg", mosaic, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


class Heavy(threading.Thread):
    """Sends explain requests one after the other until ``stop`` is set; keeps each answer's status and time."""

    def __init__(self, url: str, body: bytes, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port, f"{u.path}?{u.query}"
        self.body, self.stop = body, stop
        self.answers: list[tuple[int, float, int, dict]] = []  # status, ms, body bytes, JSON

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            t = time.perf_counter()
            conn.request("POST", self.path, body=self.body, headers={"Content-Type": "image/jpeg"})
            r = conn.getresponse()
            raw = r.read()
            self.answers.append((r.status, (time.perf_counter() - t) * 1000, len(raw), json.loads(raw)))
            conn.close()
            if r.status == 429:  # as a polite client would: wait as long as Retry-After says
                self.stop.wait(float(r.getheader("Retry-After", "1")))


def found(answer: dict) -> int:
    return answer.get("faces_found", len(answer["faces"]))  # (a server before the face caps had no faces_found)


def explained(answer: dict) -> int:
    return sum("explanation" in f for f in answer["faces"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=50, help="ordinary requests per client")
    ap.add_argument("--heavy-clients", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="server inference concurrency")
    ap.add_argument("serve_args", nargs="*", help="more `emolens serve` flags (after --)")
    args = ap.parse_args(argv)
    body, crowd = PHOTO.read_bytes(), crowd_photo()
    serve_args = ["--concurrency", str(args.concurrency), *args.serve_args]
    print(f"CPU: {cpu_description()}\nemolens serve {' '.join(serve_args)}; {args.clients} clients x "
          f"{args.requests} POST /v1/predict ({PHOTO.name}) while {args.heavy_clients} clients send "
          f"POST /v1/predict?explain=true with a {len(crowd) / 1024:.0f} KB photo of 144 faces", flush=True)
    with serve_subprocess(serve_args) as server:
        pid = server.process.pid
        url = server.url + "/v1/predict"
        run_load(url, body, 2, 8, None)  # warm-up
        run_load(url + "?explain=true", PHOTO.read_bytes(), 1, 1, None)
        rss_before = rss_mb(pid)
        stop = threading.Event()
        heavy = [Heavy(url + "?explain=true", crowd, stop) for _ in range(args.heavy_clients)]
        for h in heavy:
            h.start()
        time.sleep(1.0)  # the first explanation is under way
        lat, errs, wall = run_load(url, body, args.clients, args.clients * args.requests, 1)
        stop.set()
        for h in heavy:
            h.join()
        rss_after = rss_mb(pid)
        time.sleep(5)
        rss_idle = rss_mb(pid)
    lat.sort()
    print(f"ordinary: {len(lat) + len(errs)} requests, {len(errs)} errors (the client gives up after 120 s) in "
          f"{wall:.1f} s; latency ms p50 {percentile(lat, 50):.0f}, p95 {percentile(lat, 95):.0f}, max "
          f"{lat[-1] if lat else float('nan'):.0f}")
    for e in sorted(set(errs))[:5]:
        print(f"  error: {e} (x{errs.count(e)})")
    answers = [a for h in heavy for a in h.answers]
    ok = sorted(ms for st, ms, _, _ in answers if st == 200)
    busy = sorted(ms for st, ms, _, _ in answers if st == 429)
    other = [st for st, _, _, _ in answers if st not in (200, 429)]
    done = [d for st, _, _, d in answers if st == 200]
    sizes = [n for st, _, n, _ in answers if st == 200]
    print(f"explain: {len(answers)} requests: {len(ok)} answered 200 (p50 {percentile(ok, 50):.0f} ms, max "
          f"{ok[-1] if ok else float('nan'):.0f} ms, {max(sizes, default=0) / 2**20:.1f} MB bodies, "
          f"{found(done[0]) if done else '-'} faces found, {explained(done[0]) if done else '-'} explained), "
          f"{len(busy)} refused 429 (max {busy[-1] if busy else float('nan'):.0f} ms), "
          f"{len(other)} other {other[:5]}")
    print(f"server RSS: {rss_before:.0f} MB after warm-up, {rss_after:.0f} MB after the run, {rss_idle:.0f} MB "
          f"after 5 s idle ({rss_idle - rss_before:+.0f} MB)")
    return 1 if errs or other else 0


if __name__ == "__main__":
    sys.exit(main())
