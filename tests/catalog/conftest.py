"""Catalog fixtures: every catalog test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from comfy_gen.catalog import Catalog, close_shared


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog database: a SQLite file, or a database on the test PostgreSQL."""
    if request.param == "sqlite":
        (tmp_path / "state").mkdir(exist_ok=True)
        return "sqlite:///" + (tmp_path / "state" / "catalog.sqlite").as_posix()
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    path = tmp_path / "output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def catalog(db_url: str, output_dir: Path) -> Iterator[Catalog]:
    with Catalog(db_url, output_dir=output_dir) as cat:
        yield cat


@pytest.fixture(autouse=True)
def _close_shared_catalogs() -> Iterator[None]:
    """Catalogs the generate path opened in this process are closed after each test
    (a PostgreSQL database is dropped at teardown; its pool must not outlive it)."""
    yield
    close_shared()
