"""Test-wide isolation: no test sees the developer's env, settings or home folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.s3",
    "tests.fixtures.clip",
    "tests.fixtures.quality",
    "tests.fixtures.people",
    "tests.fixtures.prefect_harness",
    "tests.fixtures.postgres",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = REPO_ROOT / "tests" / "recordings"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Drop COMFY_GEN_* vars, point state and output folders into tmp_path, and
    forget cached settings so each test starts from a known state."""
    from comfy_gen.config import LEGACY_ENV, LEGACY_PORT_VAR, LEGACY_UNUSED

    legacy = {var for var, _ in LEGACY_ENV} | set(LEGACY_UNUSED) | {LEGACY_PORT_VAR}
    for key in list(os.environ):
        if key.startswith("COMFY_GEN_") or key in legacy:  # the original's names are read too
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COMFY_GEN_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("COMFY_GEN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout is read
    from comfy_gen.config import reset_settings_cache

    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.fixture(scope="session")
def recordings() -> Path:
    """The recorded real-ComfyUI traffic (copied from shared/comfyui-api)."""
    return RECORDINGS
