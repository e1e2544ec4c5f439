"""A recipe that renders videos, through the render-recipe flow, against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("prefect_harness")

CLIPS = """
name: clips
workflow: ltxv-t2v.json
defaults:
  frames: 9
  fps: 8
  width: 128
  height: 96
  steps: 2
prompts:
  - a red kite over hills
  - a paper boat on a river
seeds: [1]
output:
  contact_sheet: true
"""


def test_video_recipe_keeps_videos_sidecars_and_a_still_frame_sheet(emulator_factory, use_backend,
                                                                     write_recipe) -> None:
    from flows.render_recipe import render_recipe

    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("clips", CLIPS)
    first = render_recipe(recipe=str(path))
    assert first["items"] == 2 and first["rendered"] == 2 and first["counts"] == {"unvalidated": 2}
    items = Path(first["items_dir"])
    videos = sorted(items.glob("*.webp"))
    assert len(videos) == 2 and not list(items.glob("*.png"))
    for video in videos:
        with Image.open(video) as img:
            assert (img.n_frames, img.size) == (9, (128, 96))
        meta = json.loads(video.with_name(video.name + ".json").read_text())
        assert meta["parameters"]["frames"] == 9 and meta["parameters"]["fps"] == 8.0
        assert meta["storage"]["media"]["frames"] == 9 and meta["storage"]["format"] == "webp"
    sheet = Image.open(first["contact_sheet"])
    assert sheet.size[0] > 2 * 64  # two tiles, drawn from the videos' first frames (tested in detail in
    # tests/recipes/test_contact_sheet_video.py); a missing/unreadable tile would be the grey placeholder
    second = render_recipe(recipe=str(path))
    assert second["jobs"] == 0 and second["cached"] == 2, "a kept video is found again by its own extension"
    assert emu.stats()["jobs_completed"] == 2
