"""Fixtures for flow tests: emulators with their own stats, recipe files, settings."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest



@pytest.fixture()
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start emulators (each with its own data dir and stats); all stopped at teardown."""
    from comfy_gen.emulator import Emulator

    started = []

    def make(**kwargs):
        kwargs.setdefault("step_time", 0.01)
        kwargs.setdefault("data_dir", tmp_path / f"emulator{len(started)}")
        emu = Emulator(port=0, **kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture()
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """Write a recipe YAML into tmp_path/recipes and return its path."""

    def write(name: str, body: str) -> Path:
        folder = tmp_path / "recipes"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(body).lstrip())
        return path

    return write
