"""`comfy-gen recipe validate|expand|schema`: check a recipe and preview its items.

FILE is any recipe path the user names (the CLI is the user's own shell, so it
is not confined), or a bare name looked up in the recipes folder (``demo``).
Problems are printed as ``file:line: json.path: message``; the exit code comes
from the one table in ``cli/_errors.py`` (RecipeError -> 2).
"""

from __future__ import annotations

import json
from typing import Any

import click

from comfy_gen.config import get_settings
from comfy_gen.recipes.prompts import short_label


def _load(file: str) -> Any:
    from comfy_gen.recipes import load_recipe

    return load_recipe(file, settings=get_settings())


@click.group("recipe")
def recipe() -> None:
    """Validate or expand a recipe file."""


@recipe.command("validate")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(file: str, as_json: bool) -> None:
    """Check FILE (schema, references, ranges, categories) and count its items."""
    from comfy_gen.errors import RecipeError
    from comfy_gen.recipes import expand

    try:
        rec = _load(file)
        items = expand(rec, settings=get_settings())
    except RecipeError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, **exc.to_dict()}, indent=2))
            raise click.exceptions.Exit(2) from None
        raise
    if as_json:
        click.echo(json.dumps({"ok": True, "name": rec.name, "items": len(items), "sha256": rec.sha256}, indent=2))
    else:
        click.echo(f"OK: {len(items)} items")


@recipe.command("expand")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print items as JSON (RecipeItem.to_dict()).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N items.")
def expand_cmd(file: str, as_json: bool, limit: int | None) -> None:
    """List the items FILE expands to: id, prompt, seed, steps, cfg, size, labels."""
    from comfy_gen.recipes import expand_recipe

    rec = _load(file)
    expansion = expand_recipe(rec, settings=get_settings())
    items = expansion.items[:limit] if limit else expansion.items
    if as_json:
        click.echo(json.dumps({
            "name": rec.name, "count": len(expansion.items), "rows_axis": expansion.rows_axis,
            "cols_axis": expansion.cols_axis, "items": [item.to_dict() for item in items],
        }, indent=2, ensure_ascii=False))
        return
    rows = [("ID", "PROMPT", "SEED", "STEPS", "CFG", "SIZE", "LABELS")]
    for item in items:
        p = item.params
        size = f"{p.width}x{p.height}" if p.width and p.height else "-"
        labels = " ".join(f"{k}={v}" for k, v in item.labels.items())
        rows.append((item.id, short_label(p.prompt or "-", 40), _cell(p.seed), _cell(p.steps),
                     _cell(p.cfg), size, short_label(labels, 60) if labels else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    shown = f" (showing {len(items)})" if len(items) < len(expansion.items) else ""
    click.echo(f"{len(expansion.items)} items{shown}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


@recipe.command("schema")
@click.option("--json", "as_json", is_flag=True, help="Print the schema itself instead of its path.")
def schema_cmd(as_json: bool) -> None:
    """Print the path of the recipe JSON Schema (for editors), or the schema."""
    from comfy_gen.recipes.loader import SCHEMA_PATH

    if as_json:
        click.echo(SCHEMA_PATH.read_text(encoding="utf-8").rstrip())
    else:
        click.echo(str(SCHEMA_PATH))
