"""The comfy-gen exception tree.

Every expected failure raised by the library is a ``ComfyGenError``. Branches are
grouped by what the caller can do about them; exit codes and HTTP statuses are
assigned only at the edges (``comfy_gen.cli`` and the API), from one table each.

    ComfyGenError
    ├── ConfigError                 permanent: fix the input or the settings (exit 2)
    │   ├── UsageError              bad parameter value / range / format
    │   ├── PathNotAllowed          a user path outside the allowed folders
    │   ├── WorkflowError           unknown file, invalid JSON, UI format, not a graph
    │   │   └── PreflightError      missing nodes/models, out-of-range values (.problems)
    │   ├── RecipeError             every recipe problem at once (.problems)
    │   ├── CategoryError           invalid category files (.problems)
    │   ├── CompositionError        conflicts / requires / max_per_type
    │   ├── PolicyViolation         categories above the effective tier (.violations)
    │   ├── ValidatorUnavailable    validation asked for, model cannot be loaded
    │   ├── EnhancerUnavailable     prompt enhancement asked for, model/endpoint unavailable
    │   └── GenerationNotFound      no such generation in the catalog (.generation_id; HTTP 404)
    │       └── FavoriteNotFound    the generation is not a favorite (HTTP 404)
    ├── ComfyUIError                talking to ComfyUI failed
    │   ├── ComfyUIUnavailable      connection refused / 5xx after retries  [transient]
    │   ├── AllBackendsDown         every backend an item may use is down (exit 2; fail fast, no retry)
    │   ├── ComfyUITimeout          request or job wait timed out           [transient]
    │   ├── PromptRejected          400, or 200 with node_errors (.node_errors)
    │   ├── ExecutionFailed         execution_error (.node_id, .node_type, ...)
    │   ├── ExecutionInterrupted    the job was interrupted
    │   └── JobLost                 in neither queue nor history (restart)  [transient]
    ├── ValidationFailed            image below thresholds after all attempts (exit 3)
    ├── EnhancementFailed           the enhancer failed at run time (the original prompt is kept)  [transient]
    ├── BatchFailed                 some items of a recipe run failed (exit 1)
    ├── MetadataNotFound            an image carries no comfy-gen metadata (exit 1)
    ├── NotFound                    a named thing (job, generation, run, recipe, image) is unknown (HTTP 404)
    ├── ServiceBusy                 too many jobs queued; try again later (HTTP 503)   [transient]
    ├── CatalogError                the generation catalog's database failed (exit 1, HTTP 503)
    │   └── CatalogUnavailable      the database cannot be reached / is locked   [transient]
    ├── GpuGateUnavailable          gpu_gate=postgres: its database cannot be reached (exit 2)  [transient]
    ├── HubError                    a model hub (CivitAI, Hugging Face) request failed
    │   └── HubUnavailable          unreachable / timeout / 5xx / 429       [transient]
    └── StorageError                object storage failed
        ├── StorageUnavailable      endpoint unreachable / 5xx              [transient]
        ├── StorageAuthError        bad credentials / access denied
        └── BucketNotFound          the bucket does not exist

``TransientError`` is a mixin: ``isinstance(exc, TransientError)`` is what retry
policies (Prefect ``retry_condition_fn``, the outbox) check.

Errors that come from misusing the API (wrong types, impossible states) are
``RuntimeError``/``TypeError`` and stay outside this tree.

Hints name what the reader can change where the error is raised: a flag of the
CLI, or the setting (environment variable of the worker, recipe field) of a
deployment, which has no flags. ``hint_context("deployment")`` is set by the
flow when a deployment runs it; ``contextual_hint(cli=..., deployment=...)``
picks the text. The context is a ``ContextVar``: Prefect's thread task runner
copies it into every task thread, and two flows in one process never mix.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterator, Literal

HintContext = Literal["cli", "deployment"]

_HINT_CONTEXT: ContextVar[HintContext] = ContextVar("comfy_gen_hint_context", default="cli")


@contextlib.contextmanager
def hint_context(context: HintContext) -> Iterator[None]:
    """Errors raised inside the block get hints for ``context``."""
    token = _HINT_CONTEXT.set(context)
    try:
        yield
    finally:
        _HINT_CONTEXT.reset(token)


def current_hint_context() -> HintContext:
    return _HINT_CONTEXT.get()


def contextual_hint(*, cli: str, deployment: str) -> str:
    """The hint for the context the error is raised in (CLI flags vs deployment settings)."""
    return deployment if _HINT_CONTEXT.get() == "deployment" else cli


class ComfyGenError(Exception):
    """Base class of every expected comfy-gen failure."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, used by the API, MCP and --json output."""
        data: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.hint:
            data["hint"] = self.hint
        return data


class TransientError:
    """Mixin marking failures worth retrying later (network, restarts, timeouts)."""


# --- configuration and input -------------------------------------------------


class ConfigError(ComfyGenError):
    """Bad settings or input; retrying without a change cannot help."""


class UsageError(ConfigError):
    """A parameter has a bad value, range or format."""


class PathNotAllowed(ConfigError):
    """A path given by a user or agent resolves outside the allowed folders."""

    def __init__(self, path: str, allowed: list[str] | tuple[str, ...] = ()) -> None:
        allowed_txt = ", ".join(str(a) for a in allowed) or "(none)"
        super().__init__(
            f"Path {path!r} is outside the allowed folders: {allowed_txt}",
            hint="Use a path inside one of the allowed folders, or add the folder in settings.",
        )
        self.path = path
        self.allowed = tuple(str(a) for a in allowed)


class ProblemListError(ConfigError):
    """A ConfigError that carries every problem found, not just the first."""

    def __init__(self, message: str, problems: list[Any] | None = None, *, hint: str | None = None) -> None:
        self.problems: list[Any] = list(problems or [])
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"  - {p}" for p in self.problems]
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["problems"] = [p.to_dict() if hasattr(p, "to_dict") else str(p) for p in self.problems]
        return data


class WorkflowError(ConfigError):
    """A workflow file is missing, not JSON, in UI format, or not a valid API graph."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class PreflightError(ProblemListError, WorkflowError):
    """A workflow does not fit the server: missing nodes/models, bad values."""

    def __init__(self, message: str, problems: list[Any] | None = None, *, hint: str | None = None) -> None:
        ProblemListError.__init__(self, message, problems, hint=hint)
        self.path = None


class RecipeError(ProblemListError):
    """A recipe file is invalid; ``problems`` lists every ``file:line: path: message``."""


class CategoryError(ProblemListError):
    """One or more category files are invalid."""


class CompositionError(ConfigError):
    """The selected categories cannot be composed (conflict, missing requirement...)."""


class PolicyViolation(ConfigError):
    """Selected categories exceed the effective content-policy tier."""

    def __init__(self, message: str, violations: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["violations"] = self.violations
        return data


class ValidatorUnavailable(ConfigError):
    """Validation was requested but its model cannot be loaded."""


class EnhancerUnavailable(ConfigError):
    """Prompt enhancement was requested but its model cannot be loaded or its endpoint answered no probe."""


class GenerationNotFound(ConfigError):
    """No generation with this id is in the catalog (exit 2, HTTP 404)."""

    def __init__(self, generation_id: str, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message or f"No generation {generation_id!r} in the catalog",
                         hint=hint or "List known ids with `comfy-gen catalog list`; "
                                      "`comfy-gen catalog rebuild` re-indexes the output folder.")
        self.generation_id = generation_id

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["generation_id"] = self.generation_id
        return data


class FavoriteNotFound(GenerationNotFound):
    """The generation exists but is not a favorite (HTTP 404)."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(generation_id, f"Generation {generation_id!r} is not a favorite",
                         hint="Mark it first (POST /favorites, Catalog.set_favorite).")


# --- ComfyUI -----------------------------------------------------------------


class ComfyUIError(ComfyGenError):
    """Talking to a ComfyUI server failed."""

    def __init__(self, message: str, *, url: str | None = None, prompt_id: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.prompt_id = prompt_id


class ComfyUIUnavailable(ComfyUIError, TransientError):
    """The server cannot be reached, or answered 5xx after all retries."""


class AllBackendsDown(ComfyUIError):
    """Every backend an item may render on is down (``.backends``): the run stops
    queueing instead of retrying, and keeps the items that finished. Not transient:
    Prefect's retries would only wait for the same dead servers."""

    def __init__(self, message: str, *, backends: tuple[str, ...] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.backends = tuple(backends)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["backends"] = list(self.backends)
        return data


class ComfyUITimeout(ComfyUIError, TransientError):
    """A request, or the wait for a job, ran past its timeout."""


class PromptRejected(ComfyUIError):
    """ComfyUI refused the prompt (HTTP 400) or part of it (200 with node_errors).

    ``node_errors`` is a list of dicts: node_id, class_type, type, message,
    details, input_name, received_value, allowed (list or None).
    """

    def __init__(self, message: str, *, error_type: str | None = None,
                 node_errors: list[dict[str, Any]] | None = None, partial: bool = False,
                 prompt_id: str | None = None, url: str | None = None) -> None:
        super().__init__(message, url=url, prompt_id=prompt_id)
        self.error_type = error_type
        self.node_errors = list(node_errors or [])
        self.partial = partial

    def __str__(self) -> str:
        lines = [self.message]
        for e in self.node_errors:
            where = f"node {e.get('node_id')} ({e.get('class_type')})"
            if e.get("input_name"):
                where += f" input {e['input_name']!r}"
            line = f"  - {where}: {e.get('message')}"
            if e.get("details"):
                line += f": {e['details']}"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(error_type=self.error_type, node_errors=self.node_errors, partial=self.partial)
        return data


class ExecutionFailed(ComfyUIError):
    """The job ran and failed on a node (ComfyUI ``execution_error``)."""

    def __init__(self, message: str, *, prompt_id: str | None = None, node_id: str | None = None,
                 node_type: str | None = None, exception_type: str | None = None,
                 exception_message: str | None = None, traceback: list[str] | None = None,
                 url: str | None = None) -> None:
        super().__init__(message, url=url, prompt_id=prompt_id)
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = list(traceback or [])

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(prompt_id=self.prompt_id, node_id=self.node_id, node_type=self.node_type,
                    exception_type=self.exception_type, exception_message=self.exception_message)
        return data


class ExecutionInterrupted(ComfyUIError):
    """The job was interrupted before it finished."""


class JobLost(ComfyUIError, TransientError):
    """The job is in neither the queue nor the history (the server restarted)."""


# --- validation and storage --------------------------------------------------


class ValidationFailed(ComfyGenError):
    """The image did not pass validation after every allowed attempt."""

    def __init__(self, message: str, *, best: dict[str, Any] | None = None,
                 attempts: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.best = best
        self.attempts = list(attempts or [])


class EnhancementFailed(ComfyGenError, TransientError):
    """One enhancement failed at run time (timeout, 5xx, unusable text); callers keep the original prompt."""


class MetadataNotFound(ComfyGenError):
    """An image has no comfy-gen metadata (no PNG chunk, no sidecar, no ComfyUI chunks)."""


class NotFound(ComfyGenError):
    """A job, generation, favorite, run, recipe or image with this id does not exist."""

    def __init__(self, message: str, *, kind: str | None = None, id: str | None = None) -> None:  # noqa: A002
        super().__init__(message)
        self.kind = kind
        self.id = id


class ServiceBusy(ComfyGenError, TransientError):
    """A server face (API, MCP) has as many jobs queued as it accepts."""


class BatchFailed(ComfyGenError):
    """Some items of a batch failed (the others were rendered); ``summary`` has the run record."""

    def __init__(self, message: str, *, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> Any:  # picklable with its summary (Prefect stores flow exceptions)
        return (_rebuild_batch_failed, (self.message, self.summary))


def _rebuild_batch_failed(message: str, summary: dict[str, Any] | None) -> "BatchFailed":
    return BatchFailed(message, summary=summary)


class HubError(ComfyGenError):
    """A model hub request (CivitAI, Hugging Face) failed: refused, not found or malformed."""

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.status is not None:
            data["status"] = self.status
        return data


class HubUnavailable(HubError, TransientError):
    """The hub could not be reached, timed out, or answered 5xx / 429."""


class StorageError(ComfyGenError):
    """Object storage failed."""


class StorageUnavailable(StorageError, TransientError):
    """The storage endpoint is unreachable or answered 5xx."""


class StorageAuthError(StorageError):
    """Credentials were refused or access was denied."""


class BucketNotFound(StorageError):
    """The configured bucket does not exist."""


class CatalogError(ComfyGenError):
    """The generation catalog's database failed (the sidecars are untouched)."""


class CatalogUnavailable(CatalogError, TransientError):
    """The catalog database cannot be reached, or stayed locked past the busy timeout."""


class GpuGateUnavailable(ComfyGenError, TransientError):
    """The GPU gate's PostgreSQL database (gpu_gate=postgres) cannot be reached: no job
    is queued without its slot, so the item fails instead of overrunning the bound."""


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying later."""
    return isinstance(exc, TransientError)


__all__ = [
    "AllBackendsDown", "BatchFailed", "BucketNotFound", "CatalogError", "CatalogUnavailable", "CategoryError",
    "ComfyGenError", "ComfyUIError", "ComfyUITimeout", "ComfyUIUnavailable", "CompositionError", "ConfigError",
    "EnhancementFailed", "EnhancerUnavailable", "ExecutionFailed",
    "ExecutionInterrupted", "FavoriteNotFound", "GenerationNotFound", "GpuGateUnavailable", "HubError", "HubUnavailable", "JobLost",
    "MetadataNotFound", "NotFound", "PathNotAllowed", "PolicyViolation", "PreflightError", "ProblemListError",
    "PromptRejected", "RecipeError", "ServiceBusy", "StorageAuthError", "StorageError", "StorageUnavailable",
    "TransientError", "UsageError", "ValidationFailed",
    "ValidatorUnavailable", "WorkflowError", "contextual_hint", "current_hint_context", "hint_context",
    "is_transient",
]
