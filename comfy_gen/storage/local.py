"""The local output store: every image is on local disk before any upload.

Layout under ``Settings.output_dir`` (see docs/storage.md)::

    <output_dir>/
      <recipe>/                         recipe name, or "adhoc" for one-off renders
        <run_id>/<item_id>[_a<N>].png   every attempt of every item in one run
        <run_id>/<item_id>[_a<N>].png.json  its sidecar
        items/<item_id>.png             the accepted image of an item (stable)
        items/<item_id>.png.json        its sidecar
      .outbox/                          uploads still to do (comfy_gen.storage.outbox)

``item_id`` is derived from the item's content (recipe expansion hashes its
parameters), so a re-run maps to the same ``items/`` file. Writes are atomic
(temp file + rename). ``comfy_gen.outputs.keep_output`` writes the kept image
first and its sidecar last: the sidecar carries the job key that marks the item
done (``comfy_gen.batch.cached_result`` needs both), so a crash in between makes
the next run render the item again rather than trust a stale image.

Object keys mirror the stable files: ``[<prefix>/]<recipe>/<item_id>.png`` and
``<key>.json`` for its sidecar.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from comfy_gen.errors import UsageError
from comfy_gen.paths import safe_name
from comfy_gen.storage.base import check_key

ADHOC = "adhoc"
ITEMS_DIR = "items"
OUTBOX_DIR = ".outbox"
SIDECAR_SUFFIX = ".json"
IMAGE_EXTENSIONS = (".png", ".webp", ".jpg", ".jpeg", ".gif", ".mp4", ".webm")

# Names become folder and object-key segments: keep them boring.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one path segment; raise UsageError otherwise."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise UsageError(f"Invalid {what} {value!r}: use letters, digits, '.', '_' or '-' "
                         "(no '/', no '..', at most 200 characters)")
    return value


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-<6 hex>`` (UTC)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def sidecar_path(image_path: str | Path) -> Path:
    """``<image>.json``: the extension stays so x.png and x.webp never share one."""
    path = Path(image_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def object_key(recipe: str | None, item_id: str, ext: str = ".png", *, prefix: str = "") -> str:
    """The deterministic object key of an item: ``[<prefix>/]<recipe>/<item_id><ext>``.

    Names are passed through ``safe_name`` (a user's ``--output "my image.png"``
    becomes ``my_image``), so a key never has folder parts beyond the recipe.
    """
    parts = [safe_name(p) for p in prefix.strip("/").split("/") if p] if prefix else []
    parts += [safe_name(recipe or ADHOC), safe_name(item_id) + _ext(ext)]
    return check_key("/".join(parts))


def sidecar_key(key: str) -> str:
    return check_key(key) + SIDECAR_SUFFIX


def _ext(ext: str) -> str:
    ext = ext if ext.startswith(".") else "." + ext
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext):
        raise UsageError(f"Invalid file extension {ext!r}")
    return ext.lower()


# --- atomic writes -------------------------------------------------------------


def _current_umask() -> int:
    # Read once at import: os.umask can only be read by setting it, which is not
    # safe while other threads create files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temp file beside ``path`` with the usual umask-based mode (mkstemp uses 0600,
    which would make finished outputs unreadable to web servers and other users)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename,
    so readers (and a crash) never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str | Path, dest: str | Path) -> Path:
    """Copy ``src`` to ``dest`` atomically (temp file + rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(dest)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


# --- the store -----------------------------------------------------------------


class LocalStore:
    """Paths of the local layout under one output folder (nothing is created until written).

    Usage::

        store = LocalStore.from_settings(settings)
        path = store.attempt_path("portraits", run_id, item_id, attempt=2)   # downloads go here
        store.item_path("portraits", item_id)     # the kept image (comfy_gen.outputs.keep_output)
        store.find_existing("portraits", item_id) # -> that file on a re-run
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @classmethod
    def from_settings(cls, settings: Any) -> "LocalStore":
        return cls(settings.output_dir)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @property
    def outbox_dir(self) -> Path:
        return self.root / OUTBOX_DIR

    def recipe_dir(self, recipe: str | None) -> Path:
        """``<root>/<recipe>``; a recipe's ``output.dir`` may be a relative sub-folder
        (``projects/coast``), each segment a safe name."""
        parts = [check_name(part, "recipe folder") for part in (recipe or ADHOC).split("/") if part]
        return self.root.joinpath(*parts) if parts else self.root / ADHOC

    def run_dir(self, recipe: str | None, run_id: str) -> Path:
        return self.recipe_dir(recipe) / check_name(run_id, "run id")

    def attempt_path(self, recipe: str | None, run_id: str, item_id: str, *,
                     attempt: int | None = None, ext: str = ".png") -> Path:
        """``<recipe>/<run_id>/<item_id>[_a<attempt>]<ext>``; attempt 1 or None has no suffix."""
        stem = check_name(item_id, "item id")
        if attempt is not None and attempt > 1:
            stem += f"_a{int(attempt)}"
        return self.run_dir(recipe, run_id) / (stem + _ext(ext))

    def items_dir(self, recipe: str | None) -> Path:
        return self.recipe_dir(recipe) / ITEMS_DIR

    def item_path(self, recipe: str | None, item_id: str, ext: str = ".png") -> Path:
        """The stable file of an accepted item: ``<recipe>/items/<item_id><ext>``."""
        return self.items_dir(recipe) / (check_name(item_id, "item id") + _ext(ext))

    def find_existing(self, recipe: str | None, item_id: str) -> Path | None:
        """The stored image of ``item_id`` if an earlier run accepted one, else None."""
        folder = self.items_dir(recipe)
        check_name(item_id, "item id")
        for ext in IMAGE_EXTENSIONS:
            candidate = folder / (item_id + ext)
            if candidate.is_file():
                return candidate
        return None

    def write_image(self, path: str | Path, data: bytes) -> Path:
        return atomic_write_bytes(path, data)

    def iter_items(self, recipe: str | None = None) -> list[Path]:
        """Every stable item image, optionally of one recipe, sorted."""
        folders = [self.recipe_dir(recipe)] if recipe else sorted(
            p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("."))
        found: list[Path] = []
        for folder in folders:
            items = folder / ITEMS_DIR
            if items.is_dir():
                found += [p for p in items.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        return sorted(found)
