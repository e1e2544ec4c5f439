"""Verdicts for people: one short cell per image (``technical ✓ clip ✗ (23.1 < 25)``).

The item table (comfy_gen.runrecord), ``comfy-gen validate`` and the API all show
checks this way, so a failing check reads the same everywhere.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from comfy_gen.validation.plan import Verdict

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _trim(number: str) -> str:
    """``23.10`` -> ``23.1``, ``25.00`` -> ``25``: the cell stays short."""
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number


def brief(verdict: Verdict | Mapping[str, Any], limit: int = 60) -> str:
    """Why a check failed, in a few words: the numbers of a CLIP-style reason
    (``23.1 < 25``), else the reason's first clause, shortened."""
    data = verdict.to_dict() if isinstance(verdict, Verdict) else dict(verdict)
    reason = str(data.get("reason") or "")
    first = reason.split("; ")[0].removeprefix("Image is ").removeprefix("Image ")
    detail = first.split(": ", 1)[1] if ": " in first else first
    if re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*<\s*-?\d+(?:\.\d+)?\s*", detail):
        detail = _NUMBER.sub(lambda m: _trim(m.group(0)), detail)
    elif ": " in first:
        detail = first  # "Image is almost black: mean 1.2/255 (threshold 8)" keeps its words
    more = reason.count("; ")
    if more:
        detail += f" (+{more} more)"
    return detail if len(detail) <= limit else detail[:limit - 1] + "…"


def checks_cell(verdicts: Sequence[Verdict | Mapping[str, Any]]) -> str:
    """``technical ✓ clip ✗ (23.1 < 25)``: each check's verdict, failures with why."""
    parts = []
    for v in verdicts:
        data = v.to_dict() if isinstance(v, Verdict) else dict(v)
        name = str(data.get("validator") or "?")
        parts.append(f"{name} ✓" if data.get("passed") else f"{name} ✗ ({brief(data)})")
    return " ".join(parts)
