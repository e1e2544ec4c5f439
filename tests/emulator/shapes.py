"""Structural comparison of JSON bodies: same keys and value types, recursively.

- dict: same key set, values compared per key. Dicts keyed by prompt ids (the
  history) are compared like lists of their values, since ids differ per run.
- list: an empty list on either side matches any list. A list whose recorded
  elements all have one JSON type is compared as a set of element shapes; a
  mixed list (a tuple like a queue item) is compared position by position.
- scalars: same JSON type (bool, int, float, str, null kept apart).
"""

from __future__ import annotations

import re
from typing import Any

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "dict"


def _is_id_map(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(_ID.match(k) for k in value)


def mismatch(recorded: Any, actual: Any, path: str = "$") -> str | None:
    """None when the shapes agree, else a description of the first difference."""
    if _is_id_map(recorded):
        if not _is_id_map(actual):
            return f"{path}: expected a non-empty map keyed by prompt ids, got {actual!r:.80}"
        return mismatch(list(recorded.values()), list(actual.values()), path + "{*}")
    rk, ak = _kind(recorded), _kind(actual)
    if rk != ak:
        return f"{path}: expected {rk}, got {ak} ({actual!r:.80})"
    if rk == "dict":
        if set(recorded) != set(actual):
            missing = sorted(set(recorded) - set(actual))
            extra = sorted(set(actual) - set(recorded))
            return f"{path}: keys differ, missing={missing} extra={extra}"
        for key in recorded:
            problem = mismatch(recorded[key], actual[key], f"{path}.{key}")
            if problem:
                return problem
        return None
    if rk == "list":
        return _list_mismatch(recorded, actual, path)
    return None


def _list_mismatch(recorded: list[Any], actual: list[Any], path: str) -> str | None:
    if not recorded or not actual:
        return None
    if len({_kind(x) for x in recorded}) > 1:  # a tuple-like list
        if len(recorded) != len(actual):
            return f"{path}: expected {len(recorded)} items, got {len(actual)}"
        for i, (r, a) in enumerate(zip(recorded, actual)):
            problem = mismatch(r, a, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if _kind(recorded[0]) not in ("dict", "list"):
        kinds = {_kind(x) for x in actual}
        return None if kinds == {_kind(recorded[0])} else f"{path}: element types {sorted(kinds)}"
    for i, a in enumerate(actual):  # every actual element looks like some recorded one
        problems = [mismatch(r, a, f"{path}[{i}]") for r in recorded]
        if all(problems):
            return problems[0]
    for i, r in enumerate(recorded):  # and every recorded kind of element is produced
        problems = [mismatch(r, a, f"{path}[rec {i}]") for a in actual]
        if all(problems):
            return problems[0]
    return None
