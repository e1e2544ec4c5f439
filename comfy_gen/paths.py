"""User- and agent-supplied paths: whose they are decides whether they are confined.

The rule (docs/ARCHITECTURE.md, "Paths and trust"): a path typed by the person
at the keyboard of a local CLI is theirs (``trusted``: used as given, relative
to the current directory). A path that crosses a trust boundary (deployment
parameters, the HTTP API, the MCP server, names inside recipes and categories)
is ``confined`` to configured folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

from comfy_gen.errors import PathNotAllowed, UsageError

#: Who supplied a path: the local user (``trusted``) or someone across a trust boundary.
PathTrust = Literal["trusted", "confined"]


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
    resolved = _resolve(p, path)
    for root in roots:
        if resolved == root or root in resolved.parents:
            return resolved
    raise PathNotAllowed(str(path), [str(r) for r in roots])


def user_path(path: str | Path, *, trust: PathTrust, allowed: Iterable[str | Path],
              base: str | Path | None = None) -> Path:
    """Resolve a user-supplied path under the trust rule.

    ``trusted``: ``~`` expanded, relative to ``base`` (default: the current
    directory), no confinement. ``confined``: :func:`confine` to ``allowed``,
    relative paths taken from ``base`` or the first allowed folder.
    """
    if trust == "trusted":
        p = Path(path).expanduser()
        if not p.is_absolute():
            p = Path(base).expanduser() / p if base is not None else Path.cwd() / p
        return _resolve(p, path)
    return confine(path, allowed, base=base)


def _resolve(p: Path, given: str | Path) -> Path:
    """``p.resolve()``; a symlink loop is the user's error (UsageError), not a RuntimeError."""
    try:
        return p.resolve()
    except (RuntimeError, OSError) as exc:  # 3.11-3.12: RuntimeError; 3.13+: OSError(ELOOP)
        raise UsageError(f"Cannot use {str(given)!r}: symlink loop (too many levels of symbolic links)") \
            from exc


def safe_name(name: str) -> str:
    """A file name with no folder parts and no characters that trouble shells or URLs."""
    keep = [c if (c.isalnum() or c in "-_.") else "_" for c in Path(name).name]
    cleaned = "".join(keep).strip("._") or "file"
    return cleaned[:200]
