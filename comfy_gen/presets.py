"""Named generation presets (``comfy-gen generate --preset NAME``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from comfy_gen.errors import ConfigError, UsageError

SHIPPED = Path(__file__).with_name("presets.yaml")

#: Preset keys that map onto GenerationParams; the rest are validation settings.
PARAM_KEYS = ("steps", "cfg", "sampler", "scheduler", "width", "height", "denoise", "loras", "checkpoint")
VALIDATION_KEYS = ("validate", "positive_threshold", "delta_threshold", "max_attempts", "retry_strategy")


def load_presets(user_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """Shipped presets, overridden key by key by ``user_file`` when given."""
    presets: dict[str, dict[str, Any]] = {}
    for path in [SHIPPED, user_file] if user_file else [SHIPPED]:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"Cannot read presets file {path}: {exc}") from exc
        for name, values in (data.get("presets") or {}).items():
            presets[name] = {**presets.get(name, {}), **(values or {})}
    return presets


def get_preset(name: str, user_file: Path | None = None) -> dict[str, Any]:
    presets = load_presets(user_file)
    if name not in presets:
        raise UsageError(f"Unknown preset {name!r}; available: {', '.join(sorted(presets))}")
    return presets[name]
