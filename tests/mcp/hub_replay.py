"""A loopback stand-in for the CivitAI and Hugging Face REST APIs (they cannot be reached
from the test machines): it replays response bodies shaped as those APIs document them
(CivitAI REST API v1: /models, /models/{id}, /model-versions/by-hash/{hash}; Hugging Face
Hub API: /api/models, /api/models/{repo}, /api/models/{repo}/tree/{rev}) and records
each request's path, query and Authorization header."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CIVITAI_MODEL = {
    "id": 4201, "name": "Film Grain Look", "description": "<p>Analog film grain.</p>", "type": "LORA",
    "nsfw": False, "tags": ["film", "style"], "creator": {"username": "grainmaker"},
    "stats": {"downloadCount": 12345, "favoriteCount": 10, "commentCount": 3, "ratingCount": 40, "rating": 4.8},
    "modelVersions": [{
        "id": 9001, "name": "v2", "baseModel": "SD 1.5", "trainedWords": ["film grain"],
        "downloadUrl": "https://civitai.com/api/download/models/9001",
        "files": [{"name": "film_grain.safetensors", "id": 77, "sizeKB": 36864.5, "type": "Model",
                   "hashes": {"AutoV2": "ABCDEF0123", "SHA256": "AB" * 32},
                   "downloadUrl": "https://civitai.com/api/download/models/9001"}],
        "images": [{"url": "https://image.civitai.com/x.jpeg", "nsfw": "None", "width": 512, "height": 512}],
    }],
}
CIVITAI_SEARCH = {"items": [CIVITAI_MODEL], "metadata": {"totalItems": 1, "currentPage": 1, "pageSize": 10,
                                                         "totalPages": 1}}
CIVITAI_VERSION = {
    "id": 9001, "modelId": 4201, "name": "v2", "baseModel": "SD 1.5", "trainedWords": ["film grain"],
    "model": {"name": "Film Grain Look", "type": "LORA", "nsfw": False},
    "files": CIVITAI_MODEL["modelVersions"][0]["files"], "downloadUrl": "https://civitai.com/api/download/models/9001",
}
HF_LIST = [{"_id": "65a", "id": "openai/clip-vit-base-patch32", "modelId": "openai/clip-vit-base-patch32",
            "likes": 700, "downloads": 19000000, "private": False, "pipeline_tag": "zero-shot-image-classification",
            "library_name": "transformers", "tags": ["transformers", "pytorch", "clip", "vision"],
            "createdAt": "2022-03-02T23:29:04.000Z", "lastModified": "2024-02-29T09:45:55.000Z"}]
HF_INFO = {**HF_LIST[0], "author": "openai", "sha": "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268", "gated": False,
           "cardData": {"license": "mit", "tags": ["vision"]},
           "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "config.json"},
                        {"rfilename": "model.safetensors"}]}
HF_TREE = [
    {"type": "file", "oid": "a1", "size": 1519, "path": ".gitattributes"},
    {"type": "file", "oid": "b2", "size": 4186, "path": "config.json"},
    {"type": "directory", "oid": "c3", "size": 0, "path": "onnx"},
    {"type": "file", "oid": "d4", "size": 135, "path": "model.safetensors",
     "lfs": {"oid": "e5" * 32, "size": 605157884, "pointerSize": 135}},
]


class HubReplay:
    """``with HubReplay() as hub``: ``hub.url``; ``hub.requests`` [(path, query, authorization)]."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                replay.requests.append((parts.path, parse_qs(parts.query), self.headers.get("Authorization")))
                status, body = replay.route(parts.path)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str) -> tuple[int, Any]:
        routes: dict[str, Any] = {
            "/api/v1/models": CIVITAI_SEARCH, "/api/v1/models/4201": CIVITAI_MODEL,
            f"/api/v1/model-versions/by-hash/{'AB' * 32}": CIVITAI_VERSION,
            "/api/models": HF_LIST, "/api/models/openai/clip-vit-base-patch32": HF_INFO,
            "/api/models/openai/clip-vit-base-patch32/tree/main": HF_TREE,
        }
        if path == "/api/v1/models/429":
            return 429, {"error": "Too many requests"}
        if path in routes:
            return 200, routes[path]
        return 404, {"error": "Not found"}

    def __enter__(self) -> "HubReplay":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
