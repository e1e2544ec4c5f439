"""The schema comes from Alembic migrations, matches the models, and fails clearly when it can't open."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from comfy_gen.catalog import SCHEMA_HEAD, Catalog
from comfy_gen.catalog._engine import MIGRATIONS_DIR
from comfy_gen.catalog.models import Base
from comfy_gen.config import Settings
from comfy_gen.errors import CatalogError, CatalogUnavailable, ConfigError
from comfy_gen.stack import free_port
from tests.fixtures.postgres import PASSWORD


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def test_schema_head_constant_is_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(_config()).get_current_head() == SCHEMA_HEAD


def test_migrations_from_empty_build_exactly_the_models(db_url: str) -> None:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert inspect(engine).get_table_names() == []
        Catalog(db_url).close()  # opening an empty database runs `upgrade head`
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_HEAD
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    Base.metadata) == []
        with engine.begin() as conn:  # the migration also goes down and up again
            command.downgrade(_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        Catalog(db_url).close()
        assert {"generations", "generation_categories", "favorites"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_schema_newer_than_this_comfy_gen_is_a_clear_error(db_url: str) -> None:
    Catalog(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(CatalogError, match="newer comfy-gen|does not know"):
        Catalog(db_url)


def test_unreachable_postgres_is_unavailable_without_showing_the_password() -> None:
    url = f"postgresql+psycopg://comfy:{PASSWORD}@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(CatalogUnavailable) as info:
        Catalog(url)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.to_dict())


@pytest.mark.parametrize("url", ["mysql://u@127.0.0.1/db", "sqlite://", "not a url"],
                         ids=["mysql", "sqlite-memory", "garbage"])
def test_unsupported_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        Catalog(url)


def test_from_settings_defaults_to_sqlite_in_the_state_folder(tmp_path) -> None:
    settings = Settings(state_dir=tmp_path / "state", output_dir=tmp_path / "output")
    with Catalog.from_settings(settings) as cat:
        assert cat.dialect == "sqlite" and cat.output_dir == (tmp_path / "output").resolve()
    assert (tmp_path / "state" / "catalog.sqlite").is_file()
    custom = Settings(catalog_path=tmp_path / "elsewhere" / "c.sqlite")
    with Catalog.from_settings(custom):
        pass
    assert (tmp_path / "elsewhere" / "c.sqlite").is_file()


def test_sqlite_catalog_runs_in_wal_mode(tmp_path) -> None:
    url = "sqlite:///" + (tmp_path / "wal.sqlite").as_posix()
    Catalog(url).close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
