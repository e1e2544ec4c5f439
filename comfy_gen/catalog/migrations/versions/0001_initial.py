"""initial schema: generations, their categories, favorites

Revision ID: 0001
Revises:
Create Date: 2026-11-30

Self-contained on purpose (plain SQLAlchemy types, no import of the models): a
migration must build the schema of its day even after the models move on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("generation_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=True),
        sa.Column("recipe", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("recipe_hash", sa.Text(), nullable=True),
        sa.Column("workflow", sa.Text(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("local_path", sa.Text(), nullable=False),
        sa.Column("sidecar_path", sa.Text(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=True),
        sa.Column("object_url", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.Text(), nullable=True),
        sa.Column("prompt_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("generation_id", name="pk_generations"),
    )
    for column in ("created_at", "item_id", "local_path", "recipe", "run_id", "verdict"):
        op.create_index(f"ix_generations_{column}", "generations", [column])

    op.create_table(
        "favorites",
        sa.Column("generation_id", sa.String(length=64), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating >= 1 AND rating <= 5", name="ck_favorites_rating_range"),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.generation_id"],
                                name="fk_favorites_generation_id_generations", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("generation_id", name="pk_favorites"),
    )
    op.create_index("ix_favorites_created_at", "favorites", ["created_at"])
    op.create_index("ix_favorites_rating", "favorites", ["rating"])

    op.create_table(
        "generation_categories",
        sa.Column("generation_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.generation_id"],
                                name="fk_generation_categories_generation_id_generations", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("generation_id", "category", name="pk_generation_categories"),
    )
    op.create_index("ix_generation_categories_category", "generation_categories", ["category"])


def downgrade() -> None:
    op.drop_table("generation_categories")
    op.drop_table("favorites")
    op.drop_table("generations")
