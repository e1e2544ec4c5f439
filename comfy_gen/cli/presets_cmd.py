"""`generate --list-presets` / `--list-loras` and the catalog flags' request pieces.

The original's ``--list-presets`` listed its prompt catalog and ``--list-loras``
the server's LoRAs next to the catalog's LoRA presets; both are here, plus the
sampler presets (``--preset``) that comfy-gen's presets.yaml names.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

import click

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.catalogs import PromptPreset
    from comfy_gen.config import Settings
    from comfy_gen.params import LoraSpec


def list_presets(settings: "Settings", *, as_json: bool) -> int:
    """Saved prompts (--prompt-preset) and sampler presets (--preset)."""
    from comfy_gen.catalogs import prompt_catalog_for
    from comfy_gen.presets import load_presets

    prompts = prompt_catalog_for(settings)
    samplers = load_presets(settings.presets_file)
    if as_json:
        click.echo(json.dumps({"prompt_presets": [p.to_dict() for p in prompts.saved_prompts.values()],
                               "presets": samplers, "prompt_catalog": prompts.source}, indent=2, default=str))
        return 0
    click.echo(f"Prompt presets (--prompt-preset NAME; {prompts.source}):")
    for name, preset in sorted(prompts.saved_prompts.items()):
        click.echo(f"  {name:<18}[{preset.category or '-'}] {_short(preset.positive)}")
        if preset.recommended_loras:
            click.echo(f"  {'':<18}LoRAs: {', '.join(preset.recommended_loras)}")
    click.echo("\nPresets (--preset NAME):")
    for name, values in sorted(samplers.items()):
        settings_line = ", ".join(f"{k}={values[k]}" for k in ("steps", "cfg", "sampler", "scheduler") if k in values)
        click.echo(f"  {name:<18}{values.get('description', '')} ({settings_line})")
    return 0


def list_loras(settings: "Settings", *, url: str | None, as_json: bool) -> int:
    """The server's LoRAs (marked when the catalog knows them), then the LoRA presets.

    Needs the server, as the original did: unreachable is exit 2.
    """
    from comfy_gen.catalogs import lora_catalog_for
    from comfy_gen.comfyui import ComfyUIClient

    catalog = lora_catalog_for(settings)
    with ComfyUIClient.from_settings(settings, url=url) as client:
        server = client.models("loras")
    presets: dict[str, dict[str, Any]] = {
        name: {"model": s.model, "workflow": s.workflow,
               "loras": [f"{spec.name}:{spec.strength_model:g}" for spec in catalog.preset_loras(name)],
               "description": s.description}
        for name, s in catalog.model_suggestions.items()}
    if as_json:
        click.echo(json.dumps({"server_loras": [{"name": n, "catalog": _entry(catalog, n)} for n in server],
                               "lora_presets": presets, "lora_catalog": catalog.source}, indent=2))
        return 0
    click.echo(f"LoRAs on the server ({len(server)}):")
    for name in server:
        entry = catalog.get(name)
        detail = f"  {entry.recommended_strength if entry.recommended_strength is not None else 1.0:g}  " \
                 f"{entry.description}" if entry else ""
        click.echo(f"  {name}{detail}")
    click.echo(f"\nLoRA presets (--lora-preset NAME; {catalog.source}):")
    available = set(server)
    for name, info in sorted(presets.items()):
        missing = [spec.rsplit(":", 1)[0] for spec in info["loras"] if spec.rsplit(":", 1)[0] not in available]
        note = f"  (not on the server: {', '.join(missing)})" if missing else ""
        click.echo(f"  {name:<18}{', '.join(info['loras']) or '-'}{note}")
    return 0


def _entry(catalog: Any, name: str) -> dict[str, Any] | None:
    entry = catalog.get(name)
    return entry.to_dict() if entry else None


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def prompt_preset_options(opts: Mapping[str, Any], preset: "PromptPreset") -> dict[str, Any]:
    """``opts`` with a prompt preset applied: its positive unless --prompt is given,
    its negative prepended to -n (``"<preset>, <yours>"``)."""
    out = dict(opts)
    out["prompt"] = opts.get("prompt") or preset.positive
    out["negative_prompt"] = preset.negative_for(opts.get("negative_prompt"))
    return out


def lora_preset_specs(settings: "Settings", name: str | None) -> "tuple[LoraSpec, ...]":
    """The LoRAs of ``--lora-preset NAME`` (unknown name: UsageError, exit 2)."""
    if not name:
        return ()
    from comfy_gen.catalogs import lora_catalog_for

    return lora_catalog_for(settings).preset_loras(name)
