"""Confine user- and agent-supplied paths to allowed folders."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from comfy_gen.errors import PathNotAllowed


def confine(path: str | Path, allowed: Iterable[str | Path], *, base: str | Path | None = None) -> Path:
    """Resolve ``path`` (relative to ``base`` or the first allowed folder) and
    return it if it lies inside one of ``allowed``; raise PathNotAllowed otherwise.

    Symlinks are resolved first, so a link pointing outside is refused too.
    """
    roots = [Path(a).expanduser().resolve() for a in allowed]
    if not roots:
        raise PathNotAllowed(str(path), [])
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base).expanduser().resolve() / p if base is not None else roots[0] / p
    resolved = p.resolve()
    for root in roots:
        if resolved == root or root in resolved.parents:
            return resolved
    raise PathNotAllowed(str(path), [str(r) for r in roots])


def safe_name(name: str) -> str:
    """A file name with no folder parts and no characters that trouble shells or URLs."""
    keep = [c if (c.isalnum() or c in "-_.") else "_" for c in Path(name).name]
    cleaned = "".join(keep).strip("._") or "file"
    return cleaned[:200]
