"""Model hub tools: search_civitai, civitai_get_model, civitai_lookup_hash, hf_search_models,
hf_get_model_info, hf_list_files.

Real httpx clients of the public REST APIs (CivitAI ``/api/v1``, the Hugging Face
Hub ``/api/models``), off unless ``COMFY_GEN_CIVITAI_ENABLED`` /
``COMFY_GEN_HF_ENABLED``. Keys go in an ``Authorization`` header, never in a URL,
a log or an error. Read-only: no tool downloads a model. httpx errors are
translated once, here, into ``HubError`` / ``HubUnavailable``. Identifiers from a
client are checked before they become part of a URL path.
"""

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import httpx
from pydantic import Field

from comfy_gen.errors import ConfigError, HubError, HubUnavailable, UsageError
from comfy_gen.mcp.state import blocking

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

Json = dict[str, Any]
#: Hub answers larger than this are refused (a search page is a few hundred KB).
MAX_RESPONSE_BYTES = 16 << 20
HF_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
HASH = re.compile(r"^[0-9A-Fa-f]{8,64}$")
CivitaiType = Literal["all", "Checkpoint", "LORA", "LoCon", "TextualInversion", "Hypernetwork", "Controlnet",
                      "VAE", "Upscaler", "MotionModule", "Poses", "Wildcards", "Workflows", "Other"]


class HubClient:
    """One hub's base URL, key and timeout; ``get`` returns parsed JSON or raises HubError."""

    def __init__(self, name: str, base_url: str, key: str | None, timeout: float) -> None:
        headers = {"Accept": "application/json", "User-Agent": "comfy-gen-mcp"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.name = name
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                  follow_redirects=True)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.get(path, params=query)
        except httpx.TimeoutException as exc:
            raise HubUnavailable(f"{self.name} did not answer in time ({path})") from exc
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"{self.name} is unreachable: {type(exc).__name__}") from exc
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise HubError(f"{self.name} answered {len(response.content)} bytes for {path}; refused")
        if response.status_code == 429 or response.status_code >= 500:
            raise HubUnavailable(f"{self.name} answered HTTP {response.status_code} for {path}; try later",
                                 status=response.status_code)
        if response.status_code == 404:
            raise HubError(f"{self.name} has nothing at {path} (HTTP 404)", status=404)
        if response.status_code in (401, 403):
            raise HubError(f"{self.name} refused the request (HTTP {response.status_code})",
                           status=response.status_code, hint="Check the API key / token setting.")
        if response.status_code >= 400:
            raise HubError(f"{self.name} rejected {path} (HTTP {response.status_code}): {response.text[:300]}",
                           status=response.status_code)
        try:
            return response.json()
        except ValueError as exc:
            raise HubError(f"{self.name} answered something that is not JSON for {path}") from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "HubClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def civitai(settings: Any) -> HubClient:
    if not settings.civitai_enabled:
        raise ConfigError("CivitAI tools are off", hint="Set COMFY_GEN_CIVITAI_ENABLED=true to allow them.")
    return HubClient("CivitAI", settings.civitai_api_url, settings.secret("civitai_api_key"), settings.hub_timeout)


def huggingface(settings: Any) -> HubClient:
    if not settings.hf_enabled:
        raise ConfigError("Hugging Face tools are off", hint="Set COMFY_GEN_HF_ENABLED=true to allow them.")
    return HubClient("Hugging Face", settings.hf_api_url, settings.secret("hf_token"), settings.hub_timeout)


def register(app: "App") -> None:
    mcp = app.mcp
    settings = app.settings

    @mcp.tool()
    async def search_civitai(
        query: Annotated[str, Field(description="Search text.", min_length=1, max_length=200)],
        model_type: Annotated[CivitaiType, Field(description="Model type filter.")] = "all",
        base_model: Annotated[str | None, Field(description="e.g. SD 1.5, SDXL 1.0, Flux.1 D.",
                                                max_length=100)] = None,
        sort: Annotated[Literal["Highest Rated", "Most Downloaded", "Newest"],
                        Field(description="Order.")] = "Most Downloaded",
        adult: Annotated[bool, Field(description="Include NSFW models (the hub's own flag).")] = False,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
    ) -> Json:
        """Search CivitAI models: results [{id, name, type, nsfw, creator, tags, downloads, rating,
        versions [{id, name, base_model, trained_words, files}]}], count, total."""
        def run() -> Json:
            with civitai(settings) as hub:
                data = hub.get("/models", {"query": query, "types": None if model_type == "all" else model_type,
                                           "baseModels": base_model, "sort": sort, "nsfw": str(adult).lower(),
                                           "limit": limit})
            rows = [_civitai_model(m) for m in _list(data, "items")]
            total = (data.get("metadata") or {}).get("totalItems") if isinstance(data, dict) else None
            return {"results": rows, "count": len(rows), "total": total}
        return await blocking(run)

    @mcp.tool()
    async def civitai_get_model(
        model_id: Annotated[int, Field(description="A CivitAI model id.", ge=1)],
    ) -> Json:
        """One CivitAI model with its versions and files (names, sizes, SHA256, download URLs as
        information only: nothing is downloaded)."""
        def run() -> Json:
            with civitai(settings) as hub:
                return _civitai_model(hub.get(f"/models/{model_id}"), full=True)
        return await blocking(run)

    @mcp.tool()
    async def civitai_lookup_hash(
        file_hash: Annotated[str, Field(description="A model file's SHA256 (or AutoV2 short hash).",
                                        min_length=8, max_length=64)],
    ) -> Json:
        """Which CivitAI model version a file is: version_id, model_id, model_name, type, base_model,
        trained_words, files."""
        if not HASH.match(file_hash):
            raise UsageError(f"{file_hash!r} is not a hex hash")

        def run() -> Json:
            with civitai(settings) as hub:
                data = hub.get(f"/model-versions/by-hash/{file_hash}")
            model = data.get("model") or {}
            return {"version_id": data.get("id"), "version_name": data.get("name"), "model_id": data.get("modelId"),
                    "model_name": model.get("name"), "type": model.get("type"), "nsfw": model.get("nsfw"),
                    "base_model": data.get("baseModel"), "trained_words": data.get("trainedWords") or [],
                    "files": [_civitai_file(f) for f in data.get("files") or []]}
        return await blocking(run)

    @mcp.tool()
    async def hf_search_models(
        query: Annotated[str | None, Field(description="Search text.", max_length=200)] = None,
        library: Annotated[str | None, Field(description="e.g. diffusers, transformers.", max_length=100)] = None,
        tags: Annotated[list[str] | None, Field(description="Tags every result must have.")] = None,
        pipeline_tag: Annotated[str | None, Field(description="e.g. text-to-image.", max_length=100)] = None,
        sort: Annotated[Literal["downloads", "likes", "lastModified", "trending_score"],
                        Field(description="Order (descending).")] = "downloads",
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
    ) -> Json:
        """Search Hugging Face models: results [{id, author, downloads, likes, pipeline_tag, library,
        tags, last_modified}], count."""
        def run() -> Json:
            with huggingface(settings) as hub:
                data = hub.get("/api/models", {"search": query, "library": library, "filter": tags or None,
                                               "pipeline_tag": pipeline_tag, "sort": sort, "direction": -1,
                                               "limit": limit})
            rows = [_hf_model(m) for m in _list(data)]
            return {"results": rows, "count": len(rows)}
        return await blocking(run)

    @mcp.tool()
    async def hf_get_model_info(
        model_id: Annotated[str, Field(description="A repo id, e.g. openai/clip-vit-base-patch32.",
                                       min_length=1, max_length=200)],
    ) -> Json:
        """One Hugging Face model: id, author, sha, downloads, likes, pipeline_tag, library, tags,
        license, gated, last_modified, files (names)."""
        def run() -> Json:
            with huggingface(settings) as hub:
                data = hub.get(f"/api/models/{_repo(model_id)}")
            info = _hf_model(data)
            card = data.get("cardData") or {}
            info.update(sha=data.get("sha"), license=card.get("license"), gated=data.get("gated", False),
                        files=[s.get("rfilename") for s in data.get("siblings") or [] if s.get("rfilename")])
            return info
        return await blocking(run)

    @mcp.tool()
    async def hf_list_files(
        model_id: Annotated[str, Field(description="A repo id.", min_length=1, max_length=200)],
        revision: Annotated[str, Field(description="Branch, tag or commit.", pattern=r"^[\w.-]{1,100}$")] = "main",
    ) -> Json:
        """The files of a Hugging Face model repo: files [{path, size, lfs, sha256}], count, total_size.
        Nothing is downloaded."""
        def run() -> Json:
            with huggingface(settings) as hub:
                data = hub.get(f"/api/models/{_repo(model_id)}/tree/{revision}", {"recursive": "true"})
            files = []
            for entry in _list(data):
                if entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs") or {}
                files.append({"path": entry.get("path"), "size": lfs.get("size", entry.get("size")),
                              "lfs": bool(lfs), "sha256": lfs.get("oid") or lfs.get("sha256")})
            return {"model_id": model_id, "revision": revision, "files": files, "count": len(files),
                    "total_size": sum(f["size"] or 0 for f in files)}
        return await blocking(run)


def _repo(model_id: str) -> str:
    if not HF_REPO_ID.match(model_id) or ".." in model_id:
        raise UsageError(f"{model_id!r} is not a Hugging Face repo id (owner/name)")
    return model_id


def _list(data: Any, key: str | None = None) -> list[Json]:
    items = data.get(key) if key and isinstance(data, dict) else data
    if not isinstance(items, list):
        raise HubError("The hub answered an unexpected shape (no list of results)")
    return [x for x in items if isinstance(x, dict)]


def _civitai_file(f: Json) -> Json:
    return {"name": f.get("name"), "size_kb": f.get("sizeKB"), "type": f.get("type"),
            "sha256": (f.get("hashes") or {}).get("SHA256"), "download_url": f.get("downloadUrl")}


def _civitai_model(m: Json, *, full: bool = False) -> Json:
    stats = m.get("stats") or {}
    versions = [{"id": v.get("id"), "name": v.get("name"), "base_model": v.get("baseModel"),
                 "trained_words": v.get("trainedWords") or [],
                 "files": [_civitai_file(f) for f in v.get("files") or []]}
                for v in m.get("modelVersions") or []]
    data = {"id": m.get("id"), "name": m.get("name"), "type": m.get("type"), "nsfw": m.get("nsfw"),
            "creator": (m.get("creator") or {}).get("username"), "tags": m.get("tags") or [],
            "downloads": stats.get("downloadCount"), "rating": stats.get("rating"),
            "versions": versions if full else versions[:3]}
    if full:
        data["description"] = m.get("description")
    return data


def _hf_model(m: Json) -> Json:
    return {"id": m.get("id") or m.get("modelId"), "author": m.get("author"), "downloads": m.get("downloads"),
            "likes": m.get("likes"), "pipeline_tag": m.get("pipeline_tag"), "library": m.get("library_name"),
            "tags": m.get("tags") or [], "last_modified": m.get("lastModified")}
