"""Two processes writing to one catalog at once (a flow and the API), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from comfy_gen.catalog import Catalog
from tests.catalog.helpers import keep_fake_output
from tests.conftest import REPO_ROOT

OWN = 40
SHARED = 10


def _start(db_url: str, output_dir: Path, plan: Path, rating: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "tests.catalog.writer", db_url, str(output_dir), str(plan),
                             str(rating)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_two_processes_write_at_once(db_url: str, output_dir: Path, tmp_path: Path) -> None:
    shared = [keep_fake_output(output_dir, f"shared{i}", recipe="both", categories=["portrait", "outdoor"])
              for i in range(SHARED)]
    writers = []
    for n, rating in enumerate((3, 4)):
        own = [keep_fake_output(output_dir, f"w{n}-{i}", recipe=f"writer{n}", categories=["portrait"])
               for i in range(OWN)]
        plan = tmp_path / f"plan{n}.json"
        plan.write_text(json.dumps({"own": [str(k.sidecar) for k in own],
                                    "shared": [str(k.sidecar) for k in shared]}))
        writers.append(_start(db_url, output_dir, plan, rating))
    try:
        for proc in writers:  # both imported and waiting: the database is still empty (no schema)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in writers:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=240) for proc in writers]
    finally:
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(writers, results):
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[-1] == f"done {2 * OWN}"

    with Catalog(db_url, output_dir=output_dir) as cat:
        assert cat.count() == 2 * OWN + SHARED
        assert cat.count(recipe="writer0") == cat.count(recipe="writer1") == OWN
        for generation in cat.list(recipe="both"):
            assert generation.categories == ("portrait", "outdoor")  # replaced, never doubled
        favorites = cat.favorites(limit=100)
        assert len(favorites) == SHARED
        assert all((f.rating, f.tags) in ((3, ("writer-3",)), (4, ("writer-4",))) for f in favorites)
