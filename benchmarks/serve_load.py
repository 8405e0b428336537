"""Load test of `emolens serve` on loopback: N concurrent clients send a real photo for a fixed number of requests.

    python benchmarks/serve_load.py [--clients 8] [--requests 1000] [--photo PATH] [--detector centerface-fast]
                                    [--concurrency 2] [-- extra emolens serve flags]

Starts the server as a child process with the same command as `emolens serve` (loopback, a free port; its
default detector unless the extra flags say otherwise), sends a few warm-up requests, then `--clients`
threads, each with its own keep-alive connection, send `--requests` POST /v1/predict?detector=NAME requests
each (raw JPEG body; default 8 x 1,000 = 8,000 requests; `--detector default`: no ?detector=, the server's own).
Prints requests/s, latency p50/p90/p99/max, errors (anything but a 200 with the expected number of
faces), and the server's resident memory (RSS, from /proc) after start-up, after the warm-up and after the run.

The last line printed is the headline figure: requests/s, p50/p99 latency, errors and memory growth.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from emolens.face.detect import FAST_DETECTOR
from emolens.server.launch import serve_subprocess

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "photos" / "portrait_obama.jpg"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc; psutil elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q / 100 * (len(sorted_ms) - 1))))
    return sorted_ms[k]


class Client(threading.Thread):
    def __init__(self, url: str, body: bytes, faces: int | None, counter: list[int], lock: threading.Lock,
                 total: int) -> None:
        super().__init__(daemon=True)
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port, u.path + (f"?{u.query}" if u.query else "")
        self.body, self.faces, self.counter, self.lock, self.total = body, faces, counter, lock, total
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def take(self) -> bool:
        with self.lock:
            if self.counter[0] >= self.total:
                return False
            self.counter[0] += 1
            return True

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = {"Content-Type": "image/jpeg"}
        while self.take():
            t = time.perf_counter()
            try:
                conn.request("POST", self.path, body=self.body, headers=headers)
                r = conn.getresponse()
                raw = r.read()
                ms = (time.perf_counter() - t) * 1000
                if r.status != 200:
                    self.errors.append(f"HTTP {r.status}: {raw[:200]!r}")
                    continue
                n = len(json.loads(raw)["faces"])
                if self.faces is not None and n != self.faces:
                    self.errors.append(f"{n} faces instead of {self.faces}")
                    continue
                self.latencies.append(ms)
            except (OSError, http.client.HTTPException, ValueError) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        conn.close()


def run_load(
    url: str, body: bytes, clients: int, total: int, faces: int | None
) -> tuple[list[float], list[str], float]:
    lock, counter = threading.Lock(), [0]
    threads = [Client(url, body, faces, counter, lock, total) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return [x for t in threads for x in t.latencies], [e for t in threads for e in t.errors], wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=1000, help="requests per client")
    ap.add_argument("--photo", type=Path, default=PHOTO)
    ap.add_argument("--detector", default=FAST_DETECTOR,
                    help="the detector each request asks for, ?detector= (default: the video one; 'default': none)")
    ap.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="server inference concurrency")
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("serve_args", nargs="*", help="more `emolens serve` flags (after --)")
    args = ap.parse_args(argv)
    if not args.photo.is_file():
        ap.error(f"{args.photo}: no such photo (give one with --photo)")
    body = args.photo.read_bytes()
    serve_args = ["--concurrency", str(args.concurrency), *args.serve_args]
    query = "" if args.detector == "default" else f"?detector={args.detector}"
    print(f"emolens serve {' '.join(serve_args)}; POST /v1/predict{query}; photo {args.photo.name} "
          f"({len(body) / 1024:.0f} KB); "
          f"{args.clients} clients x {args.requests} requests; {os.cpu_count()} CPU cores", flush=True)
    with serve_subprocess(serve_args) as server:
        pid = server.process.pid
        rss_start = rss_mb(pid)
        url = server.url + "/v1/predict" + query
        lat, errs, _ = run_load(url, body, min(args.clients, args.warmup), args.warmup, None)
        if errs:
            print(f"warm-up failed: {errs[0]}", file=sys.stderr)
            return 1
        conn = http.client.HTTPConnection(*urlsplit(server.url).netloc.split(":"), timeout=60)
        conn.request("POST", "/v1/predict" + query, body=body, headers={"Content-Type": "image/jpeg"})
        faces = len(json.loads(conn.getresponse().read())["faces"])
        conn.close()
        rss_before = rss_mb(pid)
        total = args.clients * args.requests
        lat, errs, wall = run_load(url, body, args.clients, total, faces)
        rss_after = rss_mb(pid)
    lat.sort()
    rps = len(lat) / wall
    print(f"server RSS: {rss_start:.1f} MB after start-up, {rss_before:.1f} MB after {args.warmup} warm-up "
          f"requests, {rss_after:.1f} MB after the run ({rss_after - rss_before:+.1f} MB)")
    print(f"{len(lat)} ok, {len(errs)} errors in {wall:.1f} s; latency ms: p50 {percentile(lat, 50):.0f}, "
          f"p90 {percentile(lat, 90):.0f}, p99 {percentile(lat, 99):.0f}, max {lat[-1] if lat else float('nan'):.0f}, "
          f"mean {statistics.fmean(lat) if lat else float('nan'):.0f}")
    for e in sorted(set(errs))[:5]:
        print(f"  error: {e} (x{errs.count(e)})")
    print(f"{rps:.1f} req/s, p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms, "
          f"{len(errs)} errors, server memory {rss_after - rss_before:+.1f} MB over {total} requests "
          f"({args.clients} clients x {args.requests})")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
