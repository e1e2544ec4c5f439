"""`comfy-gen catalog rebuild|list|show`: the generation catalog (docs/catalog.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.catalog import Catalog, Generation


def _open() -> "Catalog":
    from comfy_gen.catalog import Catalog
    from comfy_gen.config import get_settings

    return Catalog.from_settings(get_settings())


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@click.group()
def catalog() -> None:
    """The index of every stored generation (SQLite, or PostgreSQL via COMFY_GEN_DATABASE_URL)."""


@catalog.command("rebuild")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to scan (default: COMFY_GEN_OUTPUT_DIR).")
@click.option("--json", "as_json", is_flag=True, help="Print {indexed, total, catalog} as JSON.")
def rebuild(output_dir: Path | None, as_json: bool) -> None:
    """Re-index every sidecar in the output folder; favorites and ratings are kept."""
    with _open() as cat:
        indexed = cat.rebuild(output_dir)
        total = cat.count()
        if as_json:
            _echo_json({"indexed": indexed, "total": total, "catalog": cat.url})
        else:
            click.echo(f"Indexed {indexed} generation(s); {total} in the catalog ({cat.url})")


@catalog.command("list")
@click.option("--recipe", help="Only this recipe's generations.")
@click.option("--run-id", help="Only this run's generations.")
@click.option("--verdict", type=click.Choice(["passed", "best_effort", "unvalidated", "failed"]),
              help="Only generations with this verdict.")
@click.option("--category", help="Only generations composed with this category.")
@click.option("--favorites", "favorite", is_flag=True, help="Only favorites.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print {total, generations: [...]} as JSON.")
def list_(recipe: str | None, run_id: str | None, verdict: str | None, category: str | None,
          favorite: bool, limit: int, offset: int, as_json: bool) -> None:
    """List generations, newest first."""
    filters: dict[str, Any] = {"recipe": recipe, "run_id": run_id, "verdict": verdict, "category": category,
                               "favorite": True if favorite else None}
    with _open() as cat:
        rows = cat.list(**filters, limit=limit, offset=offset)
        total = cat.count(**filters)
    if as_json:
        _echo_json({"total": total, "limit": limit, "offset": offset, "generations": [g.to_dict() for g in rows]})
        return
    for g in rows:
        click.echo(_line(g))
    click.echo(f"{len(rows)} of {total} generation(s)", err=True)


def _line(g: "Generation") -> str:
    where = f"{g.recipe}/{g.item_id}" if g.recipe or g.item_id else "adhoc"
    stars = f" {'*' * g.rating}" if g.rating else (" fav" if g.favorite else "")
    return (f"{g.generation_id}  {g.created_at:%Y-%m-%d %H:%M:%S}  {(g.verdict or '-'):<11}  "
            f"{where}{stars}  {g.local_path}")


@catalog.command("show")
@click.argument("generation_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole row as JSON.")
def show(generation_id: str, as_json: bool) -> None:
    """Show one generation (exit 2 if the id is unknown)."""
    from comfy_gen.errors import GenerationNotFound

    with _open() as cat:
        found = cat.get(generation_id)
    if found is None:
        raise GenerationNotFound(generation_id)
    data = found.to_dict()
    if as_json:
        _echo_json(data)
        return
    for key, value in data.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        click.echo(f"{key + ':':<14}{value}")
