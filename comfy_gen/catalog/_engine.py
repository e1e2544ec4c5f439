"""Opening the catalog database: URL, engine, migrations, error translation.

Several processes write at once (a flow's item threads, the API, a CLI
``generate``), so:

- SQLite runs in WAL mode (readers never wait for the writer) with a busy
  timeout, and every write transaction starts with ``BEGIN IMMEDIATE``: it takes
  the write lock up front, so two writers queue on the busy timeout instead of
  one failing at once when it upgrades a read lock (SQLite's deadlock rule).
  Connections are not pooled (NullPool): nothing holds the file between calls.
- PostgreSQL upserts with ``ON CONFLICT``; schema upgrades take an advisory lock.
- Alembic runs only when the stored revision is not ``SCHEMA_HEAD`` (a test keeps
  the two equal), so opening an up-to-date catalog never imports Alembic.

Every SQLAlchemy error is translated here (``db_errors``) into ``CatalogError``
or, for "cannot connect / locked", the transient ``CatalogUnavailable``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from comfy_gen.errors import CatalogError, CatalogUnavailable, ConfigError
from comfy_gen.urls import redact_text

#: The newest migration in migrations/versions (tests/catalog/test_schema.py checks it).
SCHEMA_HEAD = "0001"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key: one schema upgrade at a time per database.
_PG_MIGRATION_LOCK = 0x636174616C6F67  # "catalog"
WRITE_OPTION = "comfy_gen_catalog_write"


def sqlite_url(path: Path) -> str:
    return "sqlite:///" + Path(path).expanduser().resolve().as_posix()


def normalize_db_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 (the driver we ship)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return redact_text(url)


def create_catalog_engine(url: str, *, busy_timeout: float = 30.0) -> Engine:
    """An engine for ``url`` (sqlite:/// or postgresql+psycopg://); ConfigError for others."""
    url = normalize_db_url(url)
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ConfigError(f"COMFY_GEN_DATABASE_URL is not a database URL: {redact_text(url)!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError("The catalog needs a SQLite file (an in-memory database is one per connection)")
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": busy_timeout})
        _sqlite_events(engine, busy_timeout)
        return engine
    if backend != "postgresql":
        raise ConfigError(f"Unsupported catalog database {backend!r} in {display_url(url)}",
                          hint="Use postgresql+psycopg://user:password@host/db, or unset it for SQLite.")
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                             connect_args={"connect_timeout": 10})
    except ImportError as exc:  # the driver is an optional install
        raise ConfigError(f"The PostgreSQL driver is not installed ({exc})",
                          hint="pip install 'psycopg[binary]'") from exc


def _sqlite_events(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below); pysqlite's own BEGIN is always DEFERRED.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextlib.contextmanager
def db_errors(where: str) -> Iterator[None]:
    """Translate SQLAlchemy errors into the comfy-gen tree (message without SQL or parameters)."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        raise CatalogUnavailable(f"The catalog ({where}) is unavailable: {_reason(exc)}",
                                 hint="Check COMFY_GEN_DATABASE_URL / the catalog file; retry later.") from exc
    except sa_exc.InterfaceError as exc:
        raise CatalogUnavailable(f"The catalog ({where}) is unavailable: {_reason(exc)}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise CatalogError(f"The catalog ({where}) failed: {_reason(exc)}") from exc


def _reason(exc: sa_exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip().splitlines()
    return redact_text(text_[0] if text_ else type(exc).__name__)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine, where: str) -> None:
    """Bring the schema to ``SCHEMA_HEAD`` (Alembic ``upgrade head``); a no-op when it is there."""
    with db_errors(where):
        if current_revision(engine) == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        writer = engine.execution_options(**{WRITE_OPTION: True})
        with writer.begin() as conn:
            # Two processes opening a new catalog at once: the second waits here (SQLite:
            # BEGIN IMMEDIATE; PostgreSQL: the advisory lock), then finds the schema at head.
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            except CommandError as exc:
                raise CatalogError(
                    f"The catalog at {where} has a schema this comfy-gen does not know ({exc})",
                    hint="It was made by a newer comfy-gen: upgrade, or point COMFY_GEN_DATABASE_URL "
                         "elsewhere.") from exc
