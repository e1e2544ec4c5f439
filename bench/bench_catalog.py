"""Catalog speed: indexing one kept output, a gallery page, a rebuild, two writers at once.

    python bench/bench_catalog.py [--items 2000] [--url postgresql+psycopg://...]

Outputs are written by the real keep path (tiny PNGs + sidecars) into a temp
folder; the default database is a SQLite file there. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_gen.catalog import Catalog  # noqa: E402
from tests.catalog.helpers import keep_fake_output  # noqa: E402


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1] if len(samples) >= 20 else samples[-1]
    return f"{statistics.median(samples) * 1000:.2f} / {p95 * 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--url", help="database URL (default: a SQLite file in the temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "output"
        kept = [keep_fake_output(out, f"i{i:05d}", recipe="bench", run_id=f"run{i % 10}",
                                 categories=["portrait", "outdoor"][: 1 + i % 2], score=25.0 + i % 10,
                                 status="passed" if i % 3 else "best_effort") for i in range(args.items)]
        url = args.url or "sqlite:///" + (root / "catalog.sqlite").as_posix()
        rows: list[tuple[str, str]] = []

        started = time.perf_counter()
        cat = Catalog(url, output_dir=out)
        rows.append(("open + migrate an empty database (ms)", f"{(time.perf_counter() - started) * 1000:.0f}"))
        started = time.perf_counter()
        Catalog(url, output_dir=out).close()
        rows.append(("open an up-to-date database (ms)", f"{(time.perf_counter() - started) * 1000:.1f}"))

        samples = []
        for k in kept:
            t0 = time.perf_counter()
            cat.record_sidecar(k.sidecar)
            samples.append(time.perf_counter() - t0)
        rows.append(("record_sidecar, one writer (median / p95 ms)", _ms(samples)))

        pages = []
        for i in range(200):
            t0 = time.perf_counter()
            cat.list(limit=50, offset=(i * 50) % max(args.items - 50, 1))
            pages.append(time.perf_counter() - t0)
        rows.append((f"list(limit=50) over {args.items} rows (median / p95 ms)", _ms(pages)))
        filtered = []
        for i in range(200):
            t0 = time.perf_counter()
            cat.list(run_id=f"run{i % 10}", category="outdoor", limit=50)
            filtered.append(time.perf_counter() - t0)
        rows.append(("list(run_id, category) (median / p95 ms)", _ms(filtered)))

        t0 = time.perf_counter()
        count = cat.rebuild()
        elapsed = time.perf_counter() - t0
        rows.append((f"rebuild of {count} sidecars (s, sidecars/s)", f"{elapsed:.2f}, {count / elapsed:.0f}"))

        # Two writers (threads here; tests/catalog/test_concurrency.py uses processes) re-indexing.
        errors: list[BaseException] = []

        def write(part: list) -> None:
            try:
                for k in part:
                    cat.record_sidecar(k.sidecar)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        halves = [kept[0::2], kept[1::2]]
        t0 = time.perf_counter()
        threads = [threading.Thread(target=write, args=(h,)) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        rows.append(("two concurrent writers, upserts/s", f"{len(kept) / elapsed:.0f} ({len(errors)} errors)"))
        cat.close()

    print(f"| catalog ({url.split(':', 1)[0]}) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
