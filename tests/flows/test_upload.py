"""The flow's upload stage against a real S3 server (SeaweedFS), including an outage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")

RECIPE = """
name: uploads
workflow: tiny-sd15.json
prompts: [a stone bridge, a wooden cabin, a red kite]
seeds: [4]
output:
  upload: true
"""


def _keys(s3_server, bucket: str) -> list[str]:
    return sorted(o.object_name for o in s3_server.client().list_objects(bucket, recursive=True))


def test_outage_keeps_images_local_then_next_run_uploads_each_exactly_once(
        emulator_factory, use_backend, write_recipe, s3_server, s3_env):
    from flows.render_recipe import render_recipe

    emu = emulator_factory()
    use_backend(emu.url)
    bucket = s3_env.minio_bucket
    path = write_recipe("uploads", RECIPE)

    s3_server.stop()
    try:
        first = render_recipe(recipe=str(path))
    finally:
        s3_server.start()
    # Rendered and validated items never fail because storage was down.
    assert first["counts"] == {"unvalidated": 3}
    results = [json.loads(x) for x in (Path(first["run_dir"]) / "results.jsonl").read_text().splitlines()]
    assert {r["upload"] for r in results} == {"queued"}
    assert all(Path(r["file"]).exists() for r in results)
    assert _keys(s3_server, bucket) == []

    # Next run: nothing re-rendered, the outbox is drained, every object exactly once.
    second = render_recipe(recipe=str(path))
    assert second["jobs"] == 0 and second["cached"] == 3
    keys = _keys(s3_server, bucket)
    images = sorted(k for k in keys if k.endswith(".png"))
    assert len(images) == 3 and len(keys) == 6  # each image plus its sidecar
    assert all(k.startswith("uploads/") for k in keys)

    # Forcing a re-render re-uploads to the same deterministic keys: no duplicates.
    render_recipe(recipe=str(path), force=True)
    assert _keys(s3_server, bucket) == keys
