"""`comfy-gen categories ...` and `comfy-gen compose`: browse categories, compose recipes.

Listings are filtered by the server's policy tier (``COMFY_GEN_POLICY_TIER``);
``compose --tier`` can only lower it. ``--json`` prints the same data the API returns.
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import Any, Callable

import click

from comfy_gen.categories import (
    TIERS,
    TYPES,
    Category,
    compose as compose_text,
    effective_tier,
    get_registry,
    load_registry,
    preview,
)
from comfy_gen.exit_codes import exit_code_for
from comfy_gen.config import get_settings
from comfy_gen.errors import ComfyGenError


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def json_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """With --json, print expected errors as the API's JSON error body and exit with their code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ComfyGenError as exc:
            if not kwargs.get("as_json"):
                raise
            _echo_json(exc.to_dict())
            raise click.exceptions.Exit(exit_code_for(exc)) from None

    return wrapper


def _registry() -> Any:
    return get_registry(get_settings())


def _warn_problems(registry: Any) -> None:
    errors = [p for p in registry.problems if p.severity == "error"]
    if errors:
        click.echo(f"Warning: {len(errors)} category file problem(s); run `comfy-gen categories check`.", err=True)


@click.group()
def categories() -> None:
    """List, show, search and check categories."""


@categories.command("list")
@click.option("--type", "type_", type=click.Choice(TYPES), help="Only this type.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@json_errors
def list_cmd(type_: str | None, as_json: bool) -> None:
    """List the categories allowed at the server's policy tier."""
    settings = get_settings()
    registry = _registry()
    cats = registry.list(type=type_, tier=settings.policy_tier)
    if as_json:
        _echo_json({"items": [c.summary() for c in cats], "total": len(cats)})
        return
    _warn_problems(registry)
    width = max((len(c.id) for c in cats), default=2)
    for cat in cats:
        click.echo(f"{cat.id:<{width}}  {cat.type:<8}  {cat.display_name}: {cat.description}")
    click.echo(f"{len(cats)} categor{'y' if len(cats) == 1 else 'ies'}")


@categories.command("show")
@click.argument("category_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@json_errors
def show_cmd(category_id: str, as_json: bool) -> None:
    """Show one category in full."""
    cat = _registry().get(category_id, tier=get_settings().policy_tier)
    if as_json:
        _echo_json(cat.to_dict())
        return
    import yaml

    click.echo(f"# {cat.display_name} ({cat.source})")
    click.echo(yaml.safe_dump(cat.to_dict(), sort_keys=False, default_flow_style=None, width=110).rstrip())


@categories.command("search")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@json_errors
def search_cmd(query: str, as_json: bool) -> None:
    """Search ids, names and keywords (whole words), best match first."""
    results = _registry().search(query, tier=get_settings().policy_tier)
    if as_json:
        _echo_json({"query": query, "results": [c.summary() for c in results], "count": len(results)})
        return
    for cat in results:
        click.echo(f"{cat.id}  ({cat.type})  {cat.display_name}")
    click.echo(f"{len(results)} match(es) for {query!r}")


@categories.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_cmd(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check category files (default: the whole search path); exit 2 on any error."""
    import logging

    # The command prints every problem itself; the registry's own warnings would repeat them.
    quiet = logging.getLogger("comfy_gen.categories.registry")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        registry = load_registry(get_settings(), paths=list(paths) or None, strict=False)
    finally:
        quiet.disabled = was_disabled
    errors = [p for p in registry.problems if p.severity == "error"]
    if as_json:
        _echo_json({"categories": len(registry), "problems": [p.to_dict() for p in registry.problems],
                    "notices": registry.notices})
    else:
        for p in registry.problems:
            click.echo(f"{p.severity}: {p}")
        for notice in registry.notices:
            click.echo(f"notice: {notice}")
        click.echo(f"{len(registry)} categories loaded, {len(errors)} error(s), "
                   f"{len(registry.problems) - len(errors)} warning(s)")
    if errors:
        raise click.exceptions.Exit(2)


@click.command("compose")
@click.argument("text")
@click.option("--max-categories", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--tier", type=click.Choice(TIERS), help="Policy tier; can only lower the server's tier.")
@click.option("--dry-run", is_flag=True, help="Only print the recipe (no generation hint).")
@click.option("--preview", "only_preview", is_flag=True, help="Only show which categories would be selected.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as the API's /compose).")
@json_errors
def compose(text: str, max_categories: int, min_confidence: float, tier: str | None, dry_run: bool,
            only_preview: bool, as_json: bool) -> None:
    """Compose categories from TEXT with @tags (e.g. "a red @car at @night:1.2")."""
    settings = get_settings()
    tier_used = effective_tier(settings.policy_tier, tier)
    if tier and tier_used != tier:
        click.echo(f"Note: --tier {tier} is above the server tier; using {tier_used}.", err=True)
    registry = _registry()
    if only_preview:
        data = preview(text, registry=registry, max_categories=max_categories,
                       min_confidence=min_confidence, tier=tier_used)
        if as_json:
            _echo_json(data)
        else:
            _print_preview(data)
        return
    comp = compose_text(text, registry=registry, max_categories=max_categories,
                        min_confidence=min_confidence, tier=tier_used, dry_run=dry_run)
    if as_json:
        _echo_json(comp.to_dict())
        return
    _print_composition(comp, registry)
    if not dry_run:
        click.echo("\nTo render it:\n  " + generate_command(comp.recipe))


def _print_preview(data: dict[str, Any]) -> None:
    for c in data["explicit_categories"]:
        click.echo(f"explicit  {c['id']} (weight {c['weight']})")
    for c in data["inferred_categories"]:
        click.echo(f"inferred  {c['id']} (confidence {c['confidence']})")
    for u in data["unmatched_tags"]:
        click.echo(f"unknown   @{u['tag']}" + (f" (did you mean {', '.join(u['suggestions'])}?)"
                                                 if u["suggestions"] else ""))
    click.echo(f"remaining text: {data['remaining_prompt']!r}")


def _print_composition(comp: Any, registry: Any) -> None:
    r, ex = comp.recipe, comp.explanation
    click.echo(ex["summary"])
    conf = {i["id"]: i["confidence"] for i in ex["inferred_categories"]}
    for cid in r["categories"]:
        cat: Category = registry.get(cid)
        how = f"inferred {conf[cid]}" if cid in conf else "explicit"
        click.echo(f"  - {cid} ({cat.type}, priority {cat.priority}, {how})")
    click.echo(f"Prompt:   {r['positive_prompt']}")
    click.echo(f"Negative: {r['negative_prompt']}")
    for lora in r["loras"]:
        click.echo(f"LoRA:     {lora['filename']} @ {lora['strength']}")
    shown = {k: r[k] for k in ("steps", "cfg", "width", "height", "sampler", "scheduler", "denoise")
             if r[k] is not None}
    click.echo("Settings: " + (", ".join(f"{k}={v}" for k, v in shown.items()) or "(workflow defaults)"))
    click.echo(f"Workflow: {r['workflow']}")
    for w in ex["warnings"]:
        click.echo(f"Warning:  {w}")
    for s in ex["suggestions"]:
        click.echo(f"Hint:     {s}")
    click.echo(f"Recipe:   {comp.recipe_hash}")


def generate_command(recipe: dict[str, Any]) -> str:
    """A `comfy-gen generate` command line that renders ``recipe``."""
    args = ["comfy-gen", "generate", "--workflow", recipe["workflow"], "--prompt", recipe["positive_prompt"]]
    if recipe["negative_prompt"]:
        args += ["--negative-prompt", recipe["negative_prompt"]]
    for key in ("steps", "cfg", "width", "height", "sampler", "scheduler", "denoise"):
        if recipe[key] is not None:
            args += [f"--{key}", str(recipe[key])]
    for lora in recipe["loras"]:
        args += ["--lora", f"{lora['filename']}:{lora['strength']}"]
    return " ".join(shlex.quote(a) for a in args)
