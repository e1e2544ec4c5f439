"""The catalog's tables (SQLAlchemy 2 ORM). The schema itself is made by the Alembic
migrations in ``migrations/versions``; a test checks they build exactly these tables.

- ``generations``: one row per stored output, every column read from its sidecar.
- ``generation_categories``: the categories of a generation, one row each, so a
  category filter is an indexed join on SQLite and PostgreSQL alike.
- ``favorites``: the user's fields (rating, feedback, tags): the only data that is
  not in a sidecar, so ``rebuild`` never touches it for ids that still exist.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, CheckConstraint, DateTime, ForeignKey, Integer, MetaData, String, Text,
                        TypeDecorator)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Deterministic constraint and index names, so migrations and models agree on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores no offset: read it back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog times must be timezone-aware")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class GenerationRow(Base):
    __tablename__ = "generations"

    generation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    #: when this row was last written: rebuild removes only rows it saw before it started
    indexed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    item_id: Mapped[str | None] = mapped_column(Text, index=True)
    recipe: Mapped[str | None] = mapped_column(Text, index=True)
    run_id: Mapped[str | None] = mapped_column(Text, index=True)
    recipe_hash: Mapped[str | None] = mapped_column(Text)
    workflow: Mapped[str | None] = mapped_column(Text)
    prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    verdict: Mapped[str | None] = mapped_column(String(32), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    local_path: Mapped[str] = mapped_column(Text, index=True)
    sidecar_path: Mapped[str] = mapped_column(Text)
    object_key: Mapped[str | None] = mapped_column(Text)
    object_url: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(Text)
    prompt_id: Mapped[str | None] = mapped_column(Text)

    categories: Mapped[list["CategoryRow"]] = relationship(
        order_by="CategoryRow.position", lazy="selectin", passive_deletes=True)
    favorite: Mapped["FavoriteRow | None"] = relationship(lazy="selectin", passive_deletes=True)


class CategoryRow(Base):
    __tablename__ = "generation_categories"

    generation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("generations.generation_id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)


class FavoriteRow(Base):
    __tablename__ = "favorites"
    __table_args__ = (CheckConstraint("rating >= 1 AND rating <= 5", name="rating_range"),)

    generation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("generations.generation_id", ondelete="CASCADE"), primary_key=True)
    rating: Mapped[int | None] = mapped_column(Integer, index=True)
    feedback: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
