"""Named generation presets (``comfy-gen generate --preset NAME``).

Precedence: command-line flags > preset > the workflow's own values. The shipped
``presets.yaml`` can be extended or overridden key by key with a user file
(``COMFY_GEN_PRESETS_FILE``).

The file's top-level ``validation`` block (``enabled``, ``attempts``,
``threshold``; the original ComfyGen's ``auto_retry``, ``retry_limit`` and
``positive_threshold`` are read too) sets what ``generate`` does when neither
the flags nor the preset say: flags > preset > this block > built-in defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_gen.errors import ConfigError, UsageError
from comfy_gen.inputfile import InputFileError, read_text
from comfy_gen.safeyaml import YamlSyntaxError, load_data

SHIPPED = Path(__file__).with_name("presets.yaml")

#: Preset keys that map onto GenerationParams; the rest are validation settings.
PARAM_KEYS = ("steps", "cfg", "sampler", "scheduler", "width", "height", "denoise", "loras", "checkpoint")
#: Video keys of a preset (the original's ``length`` is the frame count; ``frames`` too).
VIDEO_KEYS = ("length", "frames", "fps")
VALIDATION_KEYS = ("validate", "positive_threshold", "delta_threshold", "max_attempts", "retry_strategy")
INFO_KEYS = ("description", "notes")


#: The validation block's keys, and the original's names for them.
BLOCK_KEYS = ("enabled", "attempts", "threshold")
BLOCK_ALIASES = {"retry_limit": "attempts", "positive_threshold": "threshold"}


@dataclass(frozen=True)
class ValidationDefaults:
    """The presets file's ``validation`` block: used when flags and preset are silent."""

    enabled: bool = False
    attempts: int = 3
    threshold: float | None = None


def _read(path: Path) -> Any:
    try:
        return load_data(read_text(Path(path))) or {}
    except InputFileError as exc:
        raise ConfigError(f"Cannot read presets file {path}: {exc.message}") from exc
    except YamlSyntaxError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc.message}") from exc


def load_validation_defaults(user_file: Path | None = None) -> ValidationDefaults:
    """The ``validation`` block of the shipped file, overridden key by key by ``user_file``.

    ``auto_retry: false`` (the original's switch) means one attempt. ConfigError
    for unknown keys or values of the wrong type.
    """
    values: dict[str, Any] = {}
    for path in [SHIPPED, user_file] if user_file else [SHIPPED]:
        data = _read(Path(path))
        block = data.get("validation") if isinstance(data, dict) else None
        if block is None:
            continue
        if not isinstance(block, dict):
            raise ConfigError(f"{path}: 'validation' must be a mapping of {', '.join(BLOCK_KEYS)}")
        unknown = sorted(set(block) - set(BLOCK_KEYS) - set(BLOCK_ALIASES) - {"auto_retry"})
        if unknown:
            raise ConfigError(f"{path}: validation has unknown keys: {', '.join(map(str, unknown))}",
                              hint=f"Known keys: {', '.join(BLOCK_KEYS)}")
        block = {BLOCK_ALIASES.get(k, k): v for k, v in block.items()}
        _check_block(path, block)
        if block.pop("auto_retry", True) is False:
            block["attempts"] = 1
        values.update(block)
    return ValidationDefaults(**values)


def _check_block(path: Path, block: dict[str, Any]) -> None:
    for key in ("enabled", "auto_retry"):
        if key in block and not isinstance(block[key], bool):
            raise ConfigError(f"{path}: validation.{key} must be true or false (got {block[key]!r})")
    attempts = block.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise ConfigError(f"{path}: validation.attempts must be a whole number from 1 to 20 (got {attempts!r})")
    threshold = block.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise ConfigError(f"{path}: validation.threshold must be a number (got {threshold!r})")


def load_presets(user_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """Shipped presets, overridden key by key by ``user_file`` when given.

    ConfigError for an unreadable file or a preset with unknown keys (a typo would
    otherwise be ignored silently).
    """
    presets: dict[str, dict[str, Any]] = {}
    known = set(PARAM_KEYS) | set(VIDEO_KEYS) | set(VALIDATION_KEYS) | set(INFO_KEYS)
    for path in [SHIPPED, user_file] if user_file else [SHIPPED]:
        data = _read(Path(path))
        entries = data.get("presets") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: expected a top-level 'presets:' mapping of name -> settings")
        for name, values in entries.items():
            values = values or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: preset {name!r} must be a mapping of settings")
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"{path}: preset {name!r} has unknown keys: {', '.join(unknown)}",
                                  hint=f"Known keys: {', '.join(sorted(known))}")
            for key, value in values.items():
                problem = _value_problem(str(key), value)
                if problem:
                    raise ConfigError(f"{path}: preset {name!r}: {problem}")
            presets[str(name)] = {**presets.get(str(name), {}), **values}
    return presets


_INTEGER_KEYS = ("steps", "width", "height", "max_attempts")
_NUMBER_KEYS = ("cfg", "denoise", "positive_threshold", "delta_threshold")
_TEXT_KEYS = ("sampler", "scheduler", "checkpoint", "retry_strategy", "description", "notes")


def _value_problem(key: str, value: Any) -> str | None:
    """Why a preset value has the wrong type (the file names it; the CLI would fail later, unnamed)."""
    import math

    from comfy_gen.params import text_problem

    if value is None:
        return None
    if key in _INTEGER_KEYS and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{key} must be an integer (got {value!r:.40})"
    if key in _NUMBER_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not math.isfinite(value)):
        return f"{key} must be a finite number (got {value!r:.40})"
    if key == "validate" and not isinstance(value, bool):
        return f"{key} must be true or false (got {value!r:.40})"
    if key in _TEXT_KEYS:
        return text_problem(value, key) if isinstance(value, str) else f"{key} must be text"
    if key == "loras":
        if not isinstance(value, list) or not all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                  for x in value):
            return "loras must be a list of {name, strength} mappings"
        return next((p for i, x in enumerate(value) if (p := text_problem(x["name"], f"loras[{i}].name"))), None)
    return None


def get_preset(name: str, user_file: Path | None = None) -> dict[str, Any]:
    """One preset's settings; UsageError listing the known names."""
    presets = load_presets(user_file)
    if name not in presets:
        raise UsageError(f"Unknown preset {name!r}; available: {', '.join(sorted(presets))}")
    return presets[name]
