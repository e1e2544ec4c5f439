"""Load a workflow file by name or path (confined to the allowed folders unless trusted)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from comfy_gen.errors import PathNotAllowed, WorkflowError
from comfy_gen.inputfile import InputFileError, read_text
from comfy_gen.paths import confine
from comfy_gen.workflow._graph import Graph
from comfy_gen.workflow.ui_format import convert_ui_workflow, is_ui_format

log = logging.getLogger(__name__)

#: API-format graphs are tens of kilobytes; UI exports with notes a few hundred.
MAX_WORKFLOW_BYTES = 16 * 1024 * 1024

UI_FORMAT_HINT = (
    'In ComfyUI use Workflow > Export (API) (older versions: enable "Dev mode" in the settings, '
    'then "Save (API Format)"), or pass the server\'s object_info so comfy-gen can convert it.'
)


def available_workflows(workflows_dir: str | Path) -> list[str]:
    """Names (without ``.json``) of the workflows in a folder."""
    folder = Path(workflows_dir)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _candidates(ref: str, workflows_dir: Path, *, trusted: bool = False) -> list[Path]:
    """Paths to try, in order (absolute: itself).

    Confined: the workflows folder, then the cwd. Trusted (a local user's own
    path): the cwd first, then the name in the workflows folder, so
    ``workflows/x.json`` works from the checkout and from anywhere else.
    """
    path = Path(ref).expanduser()
    if path.is_absolute():
        return [path]
    names = [ref] if ref.endswith(".json") else [ref, ref + ".json"]
    in_folder = [workflows_dir / n for n in names]
    if not trusted:
        return in_folder + [Path.cwd() / n for n in names]
    bare = [workflows_dir / Path(n).name for n in names if Path(n).name != n]
    return [Path.cwd() / n for n in names] + in_folder + bare


def resolve_workflow_path(path_or_name: str | Path, *, workflows_dir: str | Path | None = None,
                          allowed_dirs: Iterable[str | Path] | None = None, trusted: bool = False) -> Path:
    """The file a workflow reference names; PathNotAllowed outside the allowed folders.

    A name is looked up in ``workflows_dir`` (with or without ``.json``), then
    relative to the cwd; an absolute path must lie inside ``allowed_dirs``
    (default: ``workflows_dir`` and the cwd). ``trusted`` (the local CLI user's
    own path, comfy_gen.paths): the cwd first, then the workflows folder, and
    no confinement.
    """
    folder = Path(workflows_dir) if workflows_dir is not None else _default_dir()
    allowed = [Path(a) for a in allowed_dirs] if allowed_dirs is not None else [folder, Path.cwd()]
    refused: PathNotAllowed | None = None
    odd: Path | None = None
    for candidate in _candidates(str(path_or_name), folder, trusted=trusted):
        try:
            resolved = candidate.resolve() if trusted else confine(candidate, allowed)
        except PathNotAllowed as exc:
            if candidate.exists():
                refused = refused or exc
            continue
        except RuntimeError as exc:  # pathlib's resolve() on a symlink loop
            raise WorkflowError(f"Cannot read workflow {candidate}: symlink loop (too many levels of "
                                "symbolic links)", path=str(candidate)) from exc
        if resolved.is_file():
            return resolved
        if odd is None and resolved.exists():
            odd = resolved  # a directory, FIFO or device: reading it says which, naming it
    if refused is not None:
        raise refused
    if odd is not None:
        return odd
    names = available_workflows(folder)
    raise WorkflowError(
        f"Unknown workflow {str(path_or_name)!r} (looked in {folder})",
        path=str(path_or_name),
        hint=f"Available workflows: {', '.join(names)}" if names else f"No workflows in {folder}",
    )


def _default_dir() -> Path:
    from comfy_gen.config import get_settings

    return Path(get_settings().workflows_dir)


def load_workflow(path_or_name: str | Path, *, workflows_dir: str | Path | None = None,
                  object_info: dict[str, Any] | None = None,
                  allowed_dirs: Iterable[str | Path] | None = None, trusted: bool = False) -> Graph:
    """Read an API-format graph (UI format is converted when ``object_info`` is given).

    Raises WorkflowError for an unknown name (listing the available ones), invalid
    JSON (with line/column), UI format without ``object_info``, or not-a-graph;
    PathNotAllowed for a path outside the allowed folders (never when ``trusted``).
    """
    path = resolve_workflow_path(path_or_name, workflows_dir=workflows_dir, allowed_dirs=allowed_dirs,
                                 trusted=trusted)
    try:
        text = read_text(path, cap=MAX_WORKFLOW_BYTES)
    except InputFileError as exc:
        raise WorkflowError(f"Cannot read workflow {path}: {exc.message}", path=str(path)) from exc
    return normalize_graph(parse_json(text, source=str(path)), object_info=object_info, source=str(path))


def parse_json(text: str, *, source: str) -> Any:
    """Strict JSON: NaN/Infinity are refused (ComfyUI cannot take them and they are
    not JSON), and nesting too deep for the parser is a WorkflowError, not RecursionError."""
    def refuse(name: str) -> Any:
        raise WorkflowError(f"{source}: {name} is not a valid JSON number (use a finite number)",
                            path=source)

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                            path=source) from exc
    except RecursionError as exc:
        raise WorkflowError(f"{source}: JSON nested too deeply", path=source) from exc


def normalize_graph(data: Any, *, object_info: dict[str, Any] | None = None, source: str = "workflow") -> Graph:
    """Validate the shape of a parsed workflow and return its API-format nodes.

    Any string id is kept, digits or not (ComfyUI accepts both). Keys
    whose values are not nodes are dropped with a warning.
    """
    if is_ui_format(data):
        if object_info is None:
            raise WorkflowError(f"{source} is a UI-format workflow (it has 'nodes' and 'links'); "
                                "comfy-gen needs the API format", path=source, hint=UI_FORMAT_HINT)
        return convert_ui_workflow(data, object_info, source=source)
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]  # a saved /prompt request body
    if not isinstance(data, dict):
        raise WorkflowError(f"{source} is not a workflow graph: expected a JSON object of nodes, "
                            f"got {type(data).__name__}", path=source)
    graph: Graph = {}
    dropped = []
    for key, node in data.items():
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            inputs = node.get("inputs", {})
            if not isinstance(inputs, dict):
                raise WorkflowError(f"{source}: node {key!r} has 'inputs' that is not an object", path=source)
            graph[str(key)] = {**node, "inputs": dict(inputs)}
        elif isinstance(node, dict) and "inputs" in node:
            raise WorkflowError(f"{source}: node {key!r} is missing the class_type property", path=source)
        else:
            dropped.append(str(key))
    if dropped:
        log.warning("%s: ignoring %d key(s) that are not nodes: %s", source, len(dropped), ", ".join(dropped))
    if not graph:
        raise WorkflowError(f"{source} is not a workflow graph: no nodes with a class_type", path=source,
                            hint="An API-format workflow maps node ids to {class_type, inputs}.")
    return graph
