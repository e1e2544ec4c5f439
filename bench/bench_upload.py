#!/usr/bin/env python3
"""Upload throughput: N PNGs of ~300 kB to a local SeaweedFS, serial vs threaded.

    python bench/bench_upload.py                 # starts its own SeaweedFS (weed mini)
    python bench/bench_upload.py -n 200 --workers 8 --size-kb 300

Rounds, each into a fresh key prefix: the bare SDK (``Minio.fput_object``,
serial and threaded) as a same-machine baseline, then ``S3Storage.put`` one at
a time, ``upload_files`` with a thread pool, and that round again on the same
keys (every file skipped by the ETag check). Prints one JSON line per round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from PIL import Image  # noqa: E402

from comfy_gen.storage import Outbox, upload_files  # noqa: E402
from comfy_gen.storage.s3 import S3Storage  # noqa: E402
from tests.fixtures.s3 import SeaweedServer  # noqa: E402


def make_pngs(folder: Path, n: int, size_kb: int) -> list[Path]:
    # Random pixels do not compress, so the PNG is about as large as the raw pixels.
    side = int(math.sqrt(size_kb * 1024 / 3))
    paths = []
    for i in range(n):
        path = folder / f"img_{i:04d}.png"
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, compress_level=1)
        paths.append(path)
    return paths


def round_raw(server: SeaweedServer, bucket: str, paths: list[Path], prefix: str, workers: int) -> float:
    client = server.client()

    def put(path: Path) -> None:
        client.fput_object(bucket, f"{prefix}/{path.name}", str(path), content_type="image/png")

    start = time.perf_counter()
    if workers <= 1:
        for path in paths:
            put(path)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(put, paths))
    return time.perf_counter() - start


def round_serial(storage: S3Storage, files: list[tuple[Path, str]]) -> float:
    start = time.perf_counter()
    for path, key in files:
        storage.put(path, key)
    return time.perf_counter() - start


def round_threaded(storage: S3Storage, files: list[tuple[Path, str]], workers: int, outbox: Outbox) -> float:
    start = time.perf_counter()
    results = upload_files(storage, files, outbox, workers=workers)
    elapsed = time.perf_counter() - start
    if any(r is None for r in results):
        raise SystemExit("some uploads failed; see the outbox")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--size-kb", type=int, default=300)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp, SeaweedServer() as server:
        folder = Path(tmp)
        paths = make_pngs(folder, args.n, args.size_kb)
        total_mb = sum(p.stat().st_size for p in paths) / 1e6
        bucket = "bench-" + uuid.uuid4().hex[:8]
        server.client().make_bucket(bucket)
        storage = S3Storage(server.endpoint, server.access_key, server.secret_key, bucket,
                            pool_size=max(16, args.workers * 2))
        outbox = Outbox(folder / ".outbox")
        storage.put(paths[0], "warmup.png")  # first write allocates the volume

        rounds = [
            ("sdk fput_object serial", lambda: round_raw(server, bucket, paths, "raw1", 1)),
            (f"sdk fput_object threads={args.workers}",
             lambda: round_raw(server, bucket, paths, "raw8", args.workers)),
            ("S3Storage.put serial", lambda: round_serial(storage, [(p, f"serial/{p.name}") for p in paths])),
            (f"upload_files threads={args.workers}",
             lambda: round_threaded(storage, [(p, f"par/{p.name}") for p in paths], args.workers, outbox)),
            (f"upload_files threads={args.workers}, unchanged (ETag skip)",
             lambda: round_threaded(storage, [(p, f"par/{p.name}") for p in paths], args.workers, outbox)),
        ]
        for name, fn in rounds:
            elapsed = fn()
            print(json.dumps({"round": name, "files": args.n, "mb": round(total_mb, 1),
                              "seconds": round(elapsed, 2), "files_per_s": round(args.n / elapsed, 1),
                              "mb_per_s": round(total_mb / elapsed, 1)}))
        stored = len(storage.list("par/"))
        if stored != args.n:
            raise SystemExit(f"expected {args.n} objects, found {stored}")
    return 0


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: upload_files throughput with 8 threads; every file stored."""
    n, size_kb, workers = (40, 100, 8) if quick else (200, 300, 8)
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp, SeaweedServer() as server:
        folder = Path(tmp)
        paths = make_pngs(folder, n, size_kb)
        bucket = "bench-" + uuid.uuid4().hex[:8]
        server.client().make_bucket(bucket)
        storage = S3Storage(server.endpoint, server.access_key, server.secret_key, bucket,
                            pool_size=max(16, workers * 2))
        outbox = Outbox(folder / ".outbox")
        storage.put(paths[0], "warmup.png")
        files = [(p, f"par/{p.name}") for p in paths]
        first = round_threaded(storage, files, workers, outbox)
        again = round_threaded(storage, files, workers, outbox)
        stored = len(storage.list("par/"))
    return [
        {"metric": f"upload_files, {n} PNGs of ~{size_kb} kB, {workers} threads", "value": f"{n / first:.0f} files/s",
         "target": None, "met": None},
        {"metric": "re-upload of unchanged files (ETag skip)", "value": f"{n / again:.0f} files/s",
         "target": "faster than the first upload", "met": again < first},
        {"metric": "objects stored", "value": f"{stored} of {n}", "target": "all", "met": stored == n},
    ]


if __name__ == "__main__":
    raise SystemExit(main())
