"""Stored outputs for the catalog tests, made by the real keep path (no render needed)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from comfy_gen.generation import Attempt, Outcome
from comfy_gen.outputs import KeptOutput, OutputContext, build_output_metadata, keep_output, object_key_for
from comfy_gen.params import GenerationParams
from comfy_gen.validation.plan import Verdict


def keep_fake_output(output_dir: Path, name: str, *, prompt: str = "a lighthouse on a cliff", seed: int = 1,
                     recipe: str | None = None, run_id: str | None = None, status: str = "unvalidated",
                     score: float | None = None, categories: Sequence[str] = (), generation_id: str | None = None,
                     flow_run_id: str | None = None, created: datetime | None = None,
                     recipe_hash: str | None = None) -> KeptOutput:
    """An image and its sidecar as ``keep_output`` writes them: ``<recipe>/items/<name>.png``
    for recipe items, else ``adhoc/<name>.png``. ``created`` rewrites the sidecar's timestamp."""
    work = output_dir.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"{name}_a1.png"
    Image.new("RGB", (8, 8), (seed % 256, 40, 90)).save(source)
    params = GenerationParams(prompt=prompt, seed=seed, steps=4, width=8, height=8)
    verdicts = [] if score is None else [Verdict("clip", status == "passed", {"positive_score": score}, "ok")]
    attempt = Attempt(1, params, f"prompt-{name}", [source], 0.1, verdicts)
    outcome = Outcome([attempt], attempt, status=status, strategy="progressive", max_attempts=1)
    context = OutputContext(workflow_name="tiny-sd15", params=params, recipe=recipe,
                            item_id=name if recipe else None, run_id=run_id, flow_run_id=flow_run_id,
                            categories=tuple(categories), generation_id=generation_id, recipe_hash=recipe_hash)
    target = output_dir / (f"{recipe}/items/{name}.png" if recipe else f"adhoc/{name}.png")
    kept = keep_output(source, target, key=object_key_for(context, target),
                       metadata=build_output_metadata(context, outcome))
    if created is not None:
        edit_sidecar(kept, timestamp=created.isoformat())
    return kept


def edit_sidecar(kept: KeptOutput, **changes: Any) -> dict[str, Any]:
    """Rewrite top-level fields of a sidecar (``comfy_gen={...}`` merges into that section)."""
    assert kept.sidecar is not None
    meta = json.loads(kept.sidecar.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key].update(value)
        else:
            meta[key] = value
    kept.sidecar.write_text(json.dumps(meta))
    return meta


def rows(catalog: Any) -> dict[str, dict[str, Any]]:
    """Every row as a dict, by id (what 'the same rows' compares)."""
    return {g.generation_id: g.to_dict() for g in catalog.list(limit=1000)}
