"""What the catalog knows about one generation, read from its sidecar (pure: no database).

The sidecar is the source of truth; a catalog row is ``read_generation(sidecar)``
plus the user's fields (favorite, rating, feedback, tags), which live only in the
catalog. The id a row is keyed on comes from the sidecar, so rebuilding the
index from the output folder finds the same ids:

1. ``comfy_gen.generation_id`` (written by ``outputs.build_output_metadata``);
2. else the top-level ``generation_id`` every comfy-gen sidecar has carried
   (a uuid4, stable for the life of the file, kept when items are migrated);
3. else a uuid5 of the image's path relative to the output folder.

uuid spellings are normalised to 32 lowercase hex digits, so ``get()`` finds a
row whether it is asked with or without hyphens.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from comfy_gen.errors import MetadataNotFound, UsageError

#: Ids that travel in URLs and file names: letters, digits, ``_`` and ``-``.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Namespace of path-derived ids (sidecars without any generation id). Never change it:
#: rebuilds on either side of a change would disagree.
PATH_ID_NAMESPACE = uuid.UUID("6f1c1d3e-52a4-4c4e-9a43-0c8e6b1f2d71")
#: A sidecar is a few KB; anything this large is not one of ours.
MAX_SIDECAR_BYTES = 16 * 2**20
SIDECAR_SUFFIX = ".json"
RATINGS = range(1, 6)
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
MAX_FEEDBACK_LENGTH = 4000


def normalize_id(value: str) -> str:
    """A uuid in any spelling -> 32 lowercase hex digits; other ids unchanged."""
    text = value.strip()
    if len(text) in (32, 36):
        try:
            return uuid.UUID(text).hex
        except ValueError:
            pass
    return text


def check_generation_id(value: object) -> str:
    """``value`` as a catalog id, or UsageError naming the rule."""
    if not isinstance(value, str) or not ID_PATTERN.match(normalize_id(value)):
        raise UsageError(f"Invalid generation id {str(value)[:80]!r}: use 1-64 letters, digits, '_' or '-'")
    return normalize_id(value)


def new_generation_id() -> str:
    return uuid.uuid4().hex


def path_generation_id(image: Path, output_dir: Path | None) -> str:
    """The id of an output whose sidecar carries none: its path inside the output folder."""
    image = Path(image).resolve()
    name = image.as_posix()
    if output_dir is not None:
        try:
            name = image.relative_to(Path(output_dir).resolve()).as_posix()
        except ValueError:
            pass  # outside the output folder: the absolute path
    return uuid.uuid5(PATH_ID_NAMESPACE, name).hex


@dataclass(frozen=True)
class Generation:
    """One stored output as the catalog indexes it (times in UTC)."""

    generation_id: str
    created_at: datetime
    local_path: str
    sidecar_path: str
    item_id: str | None = None
    recipe: str | None = None
    run_id: str | None = None
    recipe_hash: str | None = None
    workflow: str | None = None
    prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    scores: Mapping[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    attempts: int = 1
    object_key: str | None = None
    object_url: str | None = None
    flow_run_id: str | None = None
    prompt_id: str | None = None
    # user fields (catalog only)
    favorite: bool = False
    rating: int | None = None
    feedback: str | None = None
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation_id": self.generation_id, "item_id": self.item_id, "recipe": self.recipe,
            "run_id": self.run_id, "recipe_hash": self.recipe_hash, "workflow": self.workflow,
            "prompt": self.prompt, "params": dict(self.params), "categories": list(self.categories),
            "scores": dict(self.scores), "verdict": self.verdict, "attempts": self.attempts,
            "local_path": self.local_path, "sidecar_path": self.sidecar_path, "object_key": self.object_key,
            "object_url": self.object_url, "flow_run_id": self.flow_run_id, "prompt_id": self.prompt_id,
            "created_at": self.created_at.isoformat(), "favorite": self.favorite, "rating": self.rating,
            "feedback": self.feedback, "tags": list(self.tags),
        }


@dataclass(frozen=True)
class Favorite:
    """A generation the user marked, with their rating (1-5), feedback and tags."""

    generation: Generation
    rating: int | None
    feedback: str | None
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def generation_id(self) -> str:
        return self.generation.generation_id

    def to_dict(self) -> dict[str, Any]:
        """The seed's favorite shape (``id`` is the generation id: one favorite per
        generation), plus tags, times and the whole generation."""
        g = self.generation
        return {
            "id": g.generation_id, "generation_id": g.generation_id, "recipe_hash": g.recipe_hash,
            "rating": self.rating, "feedback": self.feedback, "tags": list(self.tags),
            "image_url": g.object_url, "categories": list(g.categories),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
            "generation": g.to_dict(),
        }


# --- reading a sidecar -------------------------------------------------------------


def sidecar_of(path: Path) -> Path:
    """The sidecar for ``path``: itself when it is one, else ``<image>.json``."""
    path = Path(path)
    return path if path.name.endswith(SIDECAR_SUFFIX) else path.with_name(path.name + SIDECAR_SUFFIX)


def load_sidecar(sidecar: Path) -> dict[str, Any]:
    """The sidecar's document; MetadataNotFound when it is missing, too large or not comfy-gen's."""
    try:
        size = sidecar.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise MetadataNotFound(f"{sidecar}: {size} bytes is too large for a sidecar")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MetadataNotFound(f"No sidecar at {sidecar}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataNotFound(f"{sidecar}: not a readable JSON sidecar ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("comfy_gen"), dict):
        raise MetadataNotFound(f"{sidecar}: not a comfy-gen sidecar (no comfy_gen section)")
    return meta


def read_generation(path: Path, *, output_dir: Path | None = None) -> Generation:
    """The catalog row of the output whose sidecar (or image) is ``path``."""
    sidecar = sidecar_of(path).resolve()
    image = sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])
    meta = load_sidecar(sidecar)
    return generation_from_metadata(meta, image=image, sidecar=sidecar, output_dir=output_dir)


def generation_from_metadata(meta: Mapping[str, Any], *, image: Path, sidecar: Path,
                             output_dir: Path | None = None) -> Generation:
    cg = _section(meta, "comfy_gen")
    result = _section(cg, "result")
    refinement, storage = _section(meta, "refinement"), _section(meta, "storage")
    stored = cg.get("params")
    params: dict[str, Any] = dict(stored) if isinstance(stored, dict) else _legacy_params(meta)
    return Generation(
        generation_id=_generation_id(meta, cg, image, output_dir),
        created_at=_created_at(meta.get("timestamp"), sidecar),
        local_path=str(image), sidecar_path=str(sidecar),
        item_id=_text(cg.get("item_id")), recipe=_text(cg.get("recipe")), run_id=_text(cg.get("run_id")),
        recipe_hash=_text(cg.get("recipe_hash")),
        workflow=_text(cg.get("workflow")) or _text(_section(meta, "workflow").get("name")),
        prompt=_text(params.get("prompt")) or _text(_section(meta, "input").get("prompt")),
        params=params,
        categories=tuple(str(c) for c in cg.get("categories") or () if isinstance(c, str)),
        scores=_scores(meta, result),
        verdict=_text(result.get("verdict")) or _text(refinement.get("final_status")),
        attempts=_attempts(result, refinement),
        object_key=_text(storage.get("key")), object_url=_text(storage.get("url")),
        flow_run_id=_text(_section(meta, "prefect").get("flow_run_id")),
        prompt_id=_text(_section(meta, "comfyui").get("prompt_id")),
    )


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _generation_id(meta: Mapping[str, Any], cg: Mapping[str, Any], image: Path, output_dir: Path | None) -> str:
    for candidate in (cg.get("generation_id"), meta.get("generation_id")):
        if isinstance(candidate, str) and ID_PATTERN.match(normalize_id(candidate)):
            return normalize_id(candidate)
    return path_generation_id(image, output_dir)


def _created_at(stamp: Any, sidecar: Path) -> datetime:
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        except ValueError:
            pass
    return datetime.fromtimestamp(sidecar.stat().st_mtime, tz=timezone.utc)


def _legacy_params(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Resolved parameters from the seed's sections (sidecars without ``comfy_gen.params``)."""
    inp, par = _section(meta, "input"), _section(meta, "parameters")
    out: dict[str, Any] = {"prompt": inp.get("prompt"), "negative_prompt": inp.get("negative_prompt")}
    out.update({k: v for k, v in par.items() if k != "resolution"})
    resolution = par.get("resolution")
    if isinstance(resolution, list) and len(resolution) == 2:
        out["width"], out["height"] = resolution
    return {k: v for k, v in out.items() if v is not None}


def _scores(meta: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(result.get("scores"), dict):
        return dict(result["scores"])
    validation = _section(meta, "validation")
    return {k: v for k, v in validation.items() if k not in ("passed", "reason", "verdicts")}


def _attempts(result: Mapping[str, Any], refinement: Mapping[str, Any]) -> int:
    for value in (result.get("attempts"), len(refinement.get("attempts") or ()), refinement.get("attempt")):
        if isinstance(value, int) and value > 0:
            return value
    return 1


# --- user fields ----------------------------------------------------------------------


def check_rating(rating: object) -> int:
    if isinstance(rating, bool) or not isinstance(rating, int) or rating not in RATINGS:
        raise UsageError(f"rating must be an integer from 1 to 5 (got {rating!r})")
    return rating


def check_feedback(feedback: object) -> str:
    if not isinstance(feedback, str):
        raise UsageError(f"feedback must be text (got {type(feedback).__name__})")
    if len(feedback) > MAX_FEEDBACK_LENGTH:
        raise UsageError(f"feedback is {len(feedback)} characters; at most {MAX_FEEDBACK_LENGTH}")
    return feedback


def check_tags(tags: object) -> list[str]:
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise UsageError("tags must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise UsageError(f"{len(tags)} tags; at most {MAX_TAGS}")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_LENGTH:
            raise UsageError(f"tag {str(tag)[:80]!r}: use 1-{MAX_TAG_LENGTH} characters")
        if tag.strip() not in out:
            out.append(tag.strip())
    return out
