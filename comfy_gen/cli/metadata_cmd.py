"""`comfy-gen metadata show IMAGE`: print the metadata embedded in (or beside) an image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.group()
def metadata() -> None:
    """Read comfy-gen metadata from images."""


@metadata.command("show")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole document as JSON.")
def show(image: Path, as_json: bool) -> None:
    """Show IMAGE's metadata: the PNG chunk, else its IMAGE.json sidecar, else ComfyUI's chunks."""
    from comfy_gen.metadata import a1111_parameters, read_metadata

    meta = read_metadata(image)
    if as_json:
        click.echo(json.dumps(meta, indent=2, ensure_ascii=False, default=str))
        return
    if meta.get("source") == "comfyui":
        click.echo(f"{image}: only ComfyUI's own metadata (no comfy-gen document)")
        if "parameters" in meta:
            click.echo(meta["parameters"])
        for key in ("prompt", "workflow"):
            if key in meta:
                click.echo(f"{key}: {_size(meta[key])}")
        return
    click.echo(f"{image}  (from {meta.get('source')})")
    click.echo(a1111_parameters(meta))
    for label, value in _summary(meta):
        if value not in (None, "", [], {}):
            click.echo(f"{label + ':':<15}{value}")


def _size(value: Any) -> str:
    return f"{len(value)} nodes" if isinstance(value, dict) else f"{len(str(value))} characters"


def _checks(val: dict[str, Any]) -> str:
    """Each check's verdict (``technical ✓ clip ✗ (23.1 < 25)``); older sidecars: the CLIP score."""
    from comfy_gen.validation.report import checks_cell

    verdicts = val.get("verdicts")
    return checks_cell(verdicts) if verdicts else f"clip {val.get('positive_score')}"


def _summary(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    wf, ref = meta.get("workflow") or {}, meta.get("refinement") or {}
    store, org = meta.get("storage") or {}, meta.get("organization") or {}
    val, cg = meta.get("validation") or {}, meta.get("comfy_gen") or {}
    attempt = f"{ref.get('attempt')}/{ref.get('max_attempts')}" if ref.get("max_attempts") else ref.get("attempt")
    tags = ", ".join(k if v is True else f"{k}:{v}" for k, v in (org.get("tags") or {}).items())
    return [
        ("Generation", meta.get("generation_id")), ("Created", meta.get("timestamp")),
        ("Workflow", wf.get("name")), ("Recipe", cg.get("recipe")), ("Item", cg.get("item_id")),
        ("Validation", None if not val else f"{'passed' if val.get('passed') else 'failed'}"
                                            f" ({_checks(val)})"),
        ("Attempt", attempt), ("Strategy", ref.get("strategy")), ("Status", ref.get("final_status")),
        ("URL", store.get("url")), ("Project", org.get("project")), ("Tags", tags),
    ]
