"""Shared objects for the validation tests: one loaded tiny validator, test images."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def validator(tiny_clip_dir: Path):
    """An ImageValidator on the tiny CLIP, loaded through from_pretrained (no cache)."""
    from comfy_gen.validation import ImageValidator

    return ImageValidator(str(tiny_clip_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="session")
def images():
    """Eight small, different RGB images (PIL)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    out = [Image.new("RGB", (64, 48), (200, 20, 20)), Image.new("RGB", (40, 40), (10, 90, 220))]
    out += [Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 56, 3), dtype=np.uint8)) for i in range(6)]
    return out


@pytest.fixture(autouse=True)
def _fresh_validator_cache():
    """get_validator's process cache must not leak between tests."""
    from comfy_gen.validation import clear_validators

    clear_validators()
    yield
    clear_validators()
