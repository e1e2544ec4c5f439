"""The service's values: the request, the events it emits, the result, the cancel token."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from comfy_gen.comfyui.events import Event
from comfy_gen.enhance.options import EnhanceOptions
from comfy_gen.errors import UsageError, ValidationFailed
from comfy_gen.generation import Attempt
from comfy_gen.outputs import UploadState
from comfy_gen.params import GenerationParams
from comfy_gen.paths import PathTrust

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.images import CropMode

ResultStatus = Literal["passed", "best_effort", "unvalidated", "failed", "dry_run"]
EventCallback = Callable[[Event], None]


class CancelToken:
    """Set once, from any thread, to stop a generation (``cancel()``); callbacks
    registered with ``on_cancel`` run on the cancelling thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on cancellation (now, if already cancelled); returns an unregister function."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def _remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


# --- the request -------------------------------------------------------------------


@dataclass(frozen=True)
class InputImage:
    """An input image (a path or an http(s) URL), optionally resized/cropped before upload."""

    ref: str
    resize: tuple[int, int] | None = None
    crop: "CropMode | None" = None

    def __post_init__(self) -> None:
        if self.crop is not None and self.resize is None:
            raise UsageError(f"Crop mode {self.crop!r} needs a target size (resize=WxH)")


@dataclass(frozen=True)
class ValidationOptions:
    """Whether to validate, and the pass thresholds (None: the model's default)."""

    enabled: bool = False
    positive_threshold: float | None = None
    delta_threshold: float | None = None
    #: More validators than CLIP: names or ``{name, threshold, ...options}`` specs
    #: (``comfy_gen.validation.plan.build_checks``); the thresholds above apply to CLIP's check.
    checks: tuple[Any, ...] = ()
    #: Keep images unvalidated, loudly, when a validator cannot be loaded.
    allow_skip: bool = False
    #: Append the model-free technical check (black, blank, blurred ... images) when
    #: validating and ``checks`` do not list it; False = only what is listed.
    technical: bool = True


@dataclass(frozen=True)
class Organization:
    """Project, batch and ``"k:v,flag"`` tags recorded in the metadata."""

    project: str | None = None
    batch_id: str | None = None
    tags: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"project": self.project, "batch_id": self.batch_id, "tags": self.tags}


@dataclass(frozen=True)
class GenerateRequest:
    """One image to generate. ``workflow`` is a name/path or an already loaded
    graph (then ``workflow_name`` labels it). ``paths`` says whose paths these
    are (docs/ARCHITECTURE.md, "Paths and trust"): ``trusted`` for a local CLI
    user, ``confined`` (the default) for anything across a trust boundary."""

    workflow: str | Mapping[str, Any]
    params: GenerationParams
    workflow_name: str | None = None
    input_image: InputImage | None = None
    validation: ValidationOptions = ValidationOptions()
    #: Rewrite the prompt with the configured enhancer once, before anything is queued.
    enhance: EnhanceOptions = EnhanceOptions()
    retry_strategy: str = "progressive"
    max_attempts: int = 3
    output: str | None = None
    upload: bool = False
    #: False: no sidecar and nothing embedded. ``embed_metadata`` False: the sidecar
    #: only, the image file as ComfyUI made it.
    metadata: bool = True
    embed_metadata: bool = True
    organization: Organization = Organization()
    preset: str | None = None
    timeout: float | None = None
    dry_run: bool = False
    url: str | None = None
    paths: PathTrust = "confined"
    #: the catalog id the kept output gets (a face that answers before the job runs picks it);
    #: None: a new uuid4 hex. recipe_hash/categories: what it was composed from (catalog fields).
    generation_id: str | None = None
    recipe_hash: str | None = None
    categories: tuple[str, ...] = ()


# --- events and the result ------------------------------------------------------------


@dataclass(frozen=True)
class Notice(Event):
    """A message for a person (``info``)."""

    type: str = field(init=False, default="info")
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class WarningNotice(Notice):
    """A message a person should see even when quiet; also in ``GenerateResult.warnings``."""

    type: str = field(init=False, default="warning")


@dataclass(frozen=True)
class AttemptFinished(Event):
    """One attempt rendered (and scored); ``limit`` is the most attempts that may follow."""

    type: str = field(init=False, default="attempt")
    attempt: Attempt | None = None
    limit: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = self.attempt.to_dict() if self.attempt else {}
        data.pop("files", None)  # work files: only the kept attempt survives, as the result's file
        return {"type": self.type, **data}


@dataclass(frozen=True)
class GenerateResult:
    """What a generation produced; ``to_dict()`` is the ``--json-progress`` result."""

    status: ResultStatus
    workflow: str
    file: Path | None = None
    sidecar: Path | None = None
    key: str | None = None
    url: str | None = None
    upload: UploadState = "disabled"
    upload_error: str | None = None
    prompt_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    best: Attempt | None = None
    warnings: tuple[str, ...] = ()
    generation_id: str | None = None   # the catalog's id (None when no metadata was kept)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status, "generation_id": self.generation_id, "workflow": self.workflow,
            "file": str(self.file) if self.file else None,
            "sidecar": str(self.sidecar) if self.sidecar else None,
            "key": self.key, "url": self.url, "upload": self.upload, "prompt_id": self.prompt_id,
            "best_attempt": self.best.number if self.best else None,
            "attempts": [{k: v for k, v in a.to_dict().items() if k != "files"} for a in self.attempts],
            "warnings": list(self.warnings),
        }
        if self.upload_error:
            data["upload_error"] = self.upload_error
        return data

    def validation_error(self) -> ValidationFailed | None:
        """The error for a kept image that did not pass (exit 3 at the CLI), else None."""
        if self.status not in ("best_effort", "failed") or self.best is None:
            return None
        return ValidationFailed(
            f"Validation failed after {len(self.attempts)} attempt(s): {self.best.reason}; "
            f"the best attempt (#{self.best.number}) was kept at {self.file}",
            best=self.best.to_dict(), attempts=[a.to_dict() for a in self.attempts])
