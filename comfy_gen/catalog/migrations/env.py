"""Alembic environment for the catalog.

comfy-gen runs it itself (``comfy_gen.catalog._engine.migrate``), handing over a
connection that is already inside a write transaction. For a new revision during
development, point Alembic at a scratch database::

    alembic -x url=sqlite:////tmp/catalog.sqlite -c /dev/null \\
        --name alembic revision --autogenerate -m "what changed"

(or call ``alembic.command.revision`` with ``script_location`` set to this folder).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from comfy_gen.catalog.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=Base.metadata, compare_type=True,
        # SQLite cannot ALTER most things: later migrations rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("The catalog's migrations run online only (comfy-gen opens the database itself)")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("Give a database: alembic -x url=sqlite:////tmp/catalog.sqlite ...")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
