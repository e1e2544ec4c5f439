"""A process that writes to the catalog, for tests/catalog/test_concurrency.py.

``python -m tests.catalog.writer URL OUTPUT_DIR SIDECARS_JSON RATING``: prints
``ready``, waits for ``go`` on stdin (so two writers start together), then opens
the catalog (both may be creating its schema) and interleaves upserts of its own
and of shared sidecars with favorite updates on the shared ones.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    url, output_dir, sidecars_file, rating = argv
    plan = json.loads(open(sidecars_file).read())
    from comfy_gen.catalog import Catalog  # imported before "ready": the race starts at "go"

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    written = 0
    with Catalog(url, output_dir=output_dir) as cat:
        shared = plan["shared"]
        for i, own in enumerate(plan["own"]):
            cat.record_sidecar(own)
            generation = cat.record_sidecar(shared[i % len(shared)])
            cat.set_favorite(generation.generation_id, rating=int(rating), tags=[f"writer-{rating}"])
            written += 2
    print(f"done {written}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
