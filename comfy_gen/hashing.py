"""Canonical JSON and content digests: the one way comfy-gen hashes a value.

Item ids, job keys, prompt ids and preflight shapes are all derived from
content. They must agree across processes and machines, so every one of them
goes through ``canonical_json`` (sorted keys, no whitespace, UTF-8 kept) and
``digest`` here rather than each module spelling its own ``json.dumps``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any, *, ascii_only: bool = False) -> str:
    """``value`` as JSON with sorted keys and no insignificant whitespace.

    ``ascii_only`` escapes non-ASCII text: job keys and graph hashes were first
    defined that way, and stored items carry them, so they keep it.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only, default=str)


def digest(value: Any, length: int = 64, *, ascii_only: bool = False) -> str:
    """The first ``length`` hex characters of sha256 over ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value, ascii_only=ascii_only).encode()).hexdigest()[:length]
