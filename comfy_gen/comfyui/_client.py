"""ComfyUIClient: the HTTP side of talking to one ComfyUI server.

Waiting for jobs (WebSocket + history polling) lives in ``_jobs.JobTracker``;
this module owns requests, queueing, uploads, downloads and cancellation.
The client is thread-safe: the Prefect flow shares one per backend.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

import httpx

from comfy_gen.comfyui import _protocol
from comfy_gen.comfyui._http import HTTPTransport, json_body
from comfy_gen.comfyui._jobs import JobTracker
from comfy_gen.comfyui._types import CLIENT_ID_PREFIX, JobResult, OutputFile, QueuedPrompt, QueueState
from comfy_gen.comfyui.events import Event
from comfy_gen.errors import ComfyUIError, ComfyUITimeout, ComfyUIUnavailable, UsageError
from comfy_gen.urls import redact_url

if TYPE_CHECKING:
    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

#: folder -> (loader node, input) whose combo lists that folder's files. Used when
#: GET /models/{folder} answers 404 (older servers have no such route).
LOADER_INPUTS: dict[str, tuple[str, str]] = {
    "checkpoints": ("CheckpointLoaderSimple", "ckpt_name"),
    "loras": ("LoraLoader", "lora_name"),
    "vae": ("VAELoader", "vae_name"),
    "diffusion_models": ("UNETLoader", "unet_name"),
    "text_encoders": ("CLIPLoader", "clip_name"),
    "clip_vision": ("CLIPVisionLoader", "clip_name"),
    "controlnet": ("ControlNetLoader", "control_net_name"),
    "upscale_models": ("UpscaleModelLoader", "model_name"),
}
#: Folders ``available_models()`` reports (others are configs, nodes, ...).
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "diffusion_models", "text_encoders",
                 "clip_vision", "controlnet", "upscale_models", "embeddings")


def new_client_id() -> str:
    """``comfy-gen-<uuid4>``: the prefix marks jobs any comfy-gen process queued."""
    return f"{CLIENT_ID_PREFIX}{uuid.uuid4()}"


class ComfyUIClient:
    """Client for one ComfyUI server (HTTP with retries, WebSocket events).

    Usage::

        with ComfyUIClient("http://127.0.0.1:8188") as client:
            queued = client.queue_prompt(workflow)
            result = client.wait(queued.prompt_id, on_event=print)
            client.download_all(result, Path("out"))
    """

    def __init__(self, base_url: str, *, timeout: float = 30, connect_timeout: float = 5,
                 retries: int = 3, retry_delay: float = 2.0, job_timeout: float = 900,
                 poll_interval: float = 1.0, client_id: str | None = None,
                 http: httpx.Client | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        #: base_url with credentials masked: the only form put in messages, errors and logs.
        self.display_url = redact_url(self.base_url)
        self.client_id = client_id or new_client_id()
        self.job_timeout = job_timeout
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        kwargs: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        self._http = HTTPTransport(self.base_url, timeout=timeout, connect_timeout=connect_timeout,
                                   retries=retries, retry_delay=retry_delay, http=http, **kwargs)
        self._lock = threading.Lock()
        self._object_info: dict[str, Any] | None = None
        self._class_info: dict[str, dict[str, Any]] = {}
        self._jobs = JobTracker(self)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: "Settings", backend: str = "default", *, url: str | None = None,
                      job_timeout: float | None = None) -> "ComfyUIClient":
        """A client with the settings' timeouts and retries; ``url`` (a one-off
        ``--url``) replaces the backend's address, ``job_timeout`` the default wait."""
        return cls(url or settings.backend_url(backend), timeout=settings.http_timeout,
                   connect_timeout=settings.connect_timeout, retries=settings.http_retries,
                   retry_delay=settings.retry_delay, job_timeout=job_timeout or settings.job_timeout,
                   poll_interval=settings.poll_interval)

    def __enter__(self) -> "ComfyUIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the WebSocket listener and close the HTTP connection pool."""
        if not self._closed:
            self._closed = True
            self._jobs.close()
            self._http.close()

    def __repr__(self) -> str:
        return f"ComfyUIClient({self.display_url!r}, client_id={self.client_id!r})"

    # --- plumbing ---

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        """One raw request (bounded retries on 5xx and connection errors; 4xx returned as is)."""
        return self._http.request(method, path, retry=retry, **kwargs)

    def _get_json(self, path: str, *, retry: bool = True, allow_404: bool = False, **kwargs: Any) -> Any:
        """GET and decode JSON; a 404 is ``_NOT_FOUND`` when allowed, else an error."""
        response = self.request("GET", path, retry=retry, **kwargs)
        if response.status_code == 404 and allow_404:
            return _NOT_FOUND
        self._raise_for_status(response)
        return json_body(response, self._http.url(path))

    def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise ComfyUIError(f"ComfyUI answered HTTP {response.status_code} for "
                               f"{response.request.method} {response.request.url.path}",
                               url=redact_url(str(response.request.url)))

    # --- health and catalog ---

    def system_stats(self) -> dict[str, Any]:
        body = self._get_json("/system_stats", allow_404=True)
        if not isinstance(body, dict):
            raise ComfyUIUnavailable(f"{self.display_url} does not look like ComfyUI (no /system_stats)",
                                     url=self.display_url)
        return body

    def is_available(self) -> bool:
        """One quick /system_stats probe, no retries."""
        try:
            return isinstance(self._get_json("/system_stats", retry=False, allow_404=True), dict)
        except ComfyUIError:
            return False

    def object_info(self, node_class: str | None = None, *, refresh: bool = False) -> dict[str, Any]:
        """The node catalog (cached). With ``node_class``: ``{class: info}`` or ``{}``."""
        with self._lock:
            full = self._object_info
            if node_class is not None and not refresh:
                if full is not None:
                    return {node_class: full[node_class]} if node_class in full else {}
                if node_class in self._class_info:
                    return self._class_info[node_class]
        if node_class is None:
            if full is not None and not refresh:
                return full
            body = self._get_json("/object_info")
            info = body if isinstance(body, dict) else {}
            with self._lock:
                self._object_info = info
                self._class_info.clear()
            return info
        body = self._get_json(f"/object_info/{node_class}")
        info = body if isinstance(body, dict) else {}  # unknown class -> 200 {}
        with self._lock:
            self._class_info[node_class] = info
        return info

    def models(self, folder: str) -> list[str]:
        """File names in a model folder; falls back to loader combos on 404."""
        body = self._get_json(f"/models/{folder}", allow_404=True)
        if body is not _NOT_FOUND:
            return [str(x) for x in body or []]
        if folder == "embeddings":
            return self.embeddings()
        if folder not in LOADER_INPUTS:
            raise UsageError(f"Unknown model folder {folder!r} on {self.display_url}",
                             hint=f"Known folders: {', '.join(MODEL_FOLDERS)}")
        node, input_name = LOADER_INPUTS[folder]
        spec = self.object_info(node).get(node, {}).get("input", {}).get("required", {}).get(input_name)
        return _protocol.combo_choices(spec) or []

    def available_models(self) -> dict[str, list[str]]:
        """``{checkpoints: [...], loras: [...], vae: [...], ...}`` for the usual folders."""
        folders = self._get_json("/models", allow_404=True)
        present = set(folders) if isinstance(folders, list) else set(MODEL_FOLDERS)
        result: dict[str, list[str]] = {}
        for folder in MODEL_FOLDERS:
            if folder in present or folder in LOADER_INPUTS:
                try:
                    result[folder] = self.models(folder)
                except UsageError:
                    result[folder] = []
        return result

    def embeddings(self) -> list[str]:
        body = self._get_json("/embeddings", allow_404=True)
        return [] if body is _NOT_FOUND else [str(x) for x in body or []]

    # --- queue ---

    def queue_prompt(self, workflow: dict[str, Any], *, prompt_id: str | None = None,
                     front: bool = False, extra_data: dict[str, Any] | None = None) -> QueuedPrompt:
        """POST /prompt once (a retried POST first checks whether the first one landed).

        Raises PromptRejected (400, or 200 with node_errors: ``partial=True``; the
        valid part then runs under ``prompt_id`` and can still be waited for).
        """
        prompt_id = prompt_id or str(uuid.uuid4())
        payload: dict[str, Any] = {"prompt": workflow, "client_id": self.client_id,
                                   "prompt_id": prompt_id}
        if extra_data:
            payload["extra_data"] = extra_data
        if front:
            payload["front"] = True
        # Listen (and register) before posting so not a single event is missed.
        self._jobs.expect(prompt_id)
        url = redact_url(self._http.url("/prompt"))  # for messages; the request uses the path
        last: ComfyUIError | None = None
        for attempt in range(1, self._http.retries + 1):
            if attempt > 1:
                self._http.backoff(attempt - 1)
                known = self._find_submitted(prompt_id)
                if known is not None:
                    log.info("prompt %s was queued by an earlier attempt", prompt_id)
                    return known
            try:
                response = self.request("POST", "/prompt", retry=False, json=payload)
            except (ComfyUIUnavailable, ComfyUITimeout) as exc:
                last = exc
                continue
            body = json_body(response, url)
            if response.status_code == 200 and isinstance(body, dict):
                queued = QueuedPrompt(prompt_id=str(body.get("prompt_id") or prompt_id),
                                      number=body.get("number", 0))
                if body.get("node_errors"):
                    raise _protocol.prompt_rejection(body, status=200, prompt_id=queued.prompt_id,
                                                     url=url)
                return queued
            self._jobs.forget(prompt_id)
            if response.status_code == 400:
                raise _protocol.prompt_rejection(body, status=400, prompt_id=prompt_id, url=url)
            self._raise_for_status(response)
            raise ComfyUIError(f"Unexpected answer to POST /prompt: HTTP {response.status_code}", url=url)
        self._jobs.forget(prompt_id)
        assert last is not None
        raise last

    def _find_submitted(self, prompt_id: str) -> QueuedPrompt | None:
        """Whether an earlier POST of ``prompt_id`` reached the server."""
        try:
            state = self.get_queue(retry=False)
            for item in state.running + state.pending:
                if item.prompt_id == prompt_id:
                    return QueuedPrompt(prompt_id, item.number)
            entry = self.history(prompt_id, retry=False)
        except (ComfyUIUnavailable, ComfyUITimeout):
            return None
        if entry:
            prompt = entry.get("prompt") or [0]
            return QueuedPrompt(prompt_id, prompt[0] if prompt else 0)
        return None

    def get_queue(self, *, retry: bool = True) -> QueueState:
        return _protocol.parse_queue(self._get_json("/queue", retry=retry))

    def history(self, prompt_id: str, *, retry: bool = True) -> dict[str, Any] | None:
        """The history entry of a finished prompt, or None (unknown or not done yet)."""
        body = self._get_json(f"/history/{prompt_id}", retry=retry)
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    def wait(self, prompt_id: str, *, timeout: float | None = None,
             on_event: Callable[[Event], None] | None = None) -> JobResult:
        """Block until the job ends. Raises ExecutionFailed, ExecutionInterrupted,
        JobLost (in neither queue nor history) or ComfyUITimeout."""
        return self._jobs.wait(prompt_id, timeout=timeout or self.job_timeout, on_event=on_event)

    # --- files ---

    def download(self, output: OutputFile, dest: Path) -> Path:
        """Fetch one output via /view into ``dest`` (a file path, or a folder)."""
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / Path(output.filename).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        params = {"filename": output.filename, "subfolder": output.subfolder, "type": output.type}
        response = self._http.stream_to("/view", dest, params=params)
        if response.status_code == 404:
            raise ComfyUIError(f"Output {output.subfolder + '/' if output.subfolder else ''}"
                               f"{output.filename} ({output.type}) is not on the server",
                               url=self.display_url)
        self._raise_for_status(response)
        return dest

    def download_all(self, result: JobResult, dest_dir: Path) -> list[Path]:
        """Download every output of a job into ``dest_dir``; returns the paths."""
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for output in result.outputs:
            target = dest_dir / Path(output.filename).name
            if target in paths:  # same name from two nodes: keep both
                target = dest_dir / f"{output.node_id}_{target.name}"
            paths.append(self.download(output, target))
        return paths

    def upload_image(self, path: str | Path, *, subfolder: str = "", overwrite: bool = False,
                     kind: Literal["input", "temp", "output"] = "input") -> str:
        """Upload an image; returns the name to put in LoadImage (``sub/name.png``)."""
        path = Path(path)
        try:
            data = path.read_bytes()  # read once: every retry must send the same bytes
        except OSError as exc:
            raise UsageError(f"Cannot read image {str(path)!r}: {exc.strerror or exc}") from exc
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        form = {"type": kind, "subfolder": subfolder, "overwrite": "true" if overwrite else "false"}
        response = self.request("POST", "/upload/image", files={"image": (path.name, data, mime)},
                                 data=form)
        if response.status_code == 400:
            raise UsageError(f"ComfyUI refused the upload of {path.name!r} (subfolder {subfolder!r})")
        self._raise_for_status(response)
        body = json_body(response, self._http.url("/upload/image")) or {}
        name = str(body.get("name") or path.name)
        folder = str(body.get("subfolder") or "")
        return f"{folder}/{name}" if folder else name

    # --- control ---

    def interrupt(self, prompt_id: str, *, retry: bool = True) -> bool:
        """Interrupt ``prompt_id`` if it is the running job; never a bare interrupt."""
        if self.get_queue(retry=retry).find(prompt_id) != "running":
            return False
        self._raise_for_status(self.request("POST", "/interrupt", retry=retry, json={"prompt_id": prompt_id}))
        return True

    def delete_pending(self, prompt_ids: Iterable[str], *, retry: bool = True) -> None:
        """Remove pending jobs (running or unknown ids are ignored by the server)."""
        ids = list(prompt_ids)
        if ids:
            self._raise_for_status(self.request("POST", "/queue", retry=retry, json={"delete": ids}))

    def cancel(self, prompt_id: str, *, retry: bool = True) -> Literal["interrupted", "deleted", "not_found"]:
        """Delete a pending job or interrupt a running one (``retry=False``: one try, for clean-up)."""
        where = self.get_queue(retry=retry).find(prompt_id)
        if where == "running":
            return "interrupted" if self.interrupt(prompt_id, retry=retry) else "not_found"
        if where == "pending":
            self.delete_pending([prompt_id], retry=retry)
            # It may have started between the two calls; deleting a running id is a no-op.
            if self.interrupt(prompt_id, retry=retry):
                return "interrupted"
            return "deleted"
        return "not_found"

    def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """Ask the server to unload models / free memory after the current job."""
        self._raise_for_status(self.request(
            "POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory}))


class _NotFound:
    def __repr__(self) -> str:
        return "<404>"


_NOT_FOUND: Any = _NotFound()
