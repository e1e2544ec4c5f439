"""The README's first command: `comfy-gen demo` end to end in a fresh folder, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_renders_the_demo_recipe_through_the_flow_on_the_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY_GEN_", "PREFECT_"))}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run([sys.executable, "-m", "comfy_gen.cli", "demo", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "USING THE BUILT-IN EMULATOR" in result.stderr  # said loudly
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["recipe"] == "demo" and summary["items"] == 6
    assert summary["counts"] == {"unvalidated": 6} and summary["validation_skipped"] is True
    items = Path(summary["items_dir"])
    assert items.is_relative_to(tmp_path) and len(list(items.glob("*.png"))) == 6
    assert Path(summary["contact_sheet"]).exists()
    # The run history stays in the local Prefect home, for `prefect server start` later.
    assert (tmp_path / ".comfy-gen" / "prefect" / "prefect.db").exists()

    again = subprocess.run([sys.executable, "-m", "comfy_gen.cli", "demo", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert summary["jobs"] == 0 and summary["cached"] == 6
