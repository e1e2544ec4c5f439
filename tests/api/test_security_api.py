"""Auth (bearer tokens), the loopback rule, policy tiers (only ever lowered), CORS and confinement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from comfy_gen.config import Settings
from tests.api.conftest import REPO, ApiServer

TOKEN = "s3cret-token"


def test_no_token_wrong_token_and_right_token(make_api) -> None:
    api = make_api(api_token=TOKEN, token=None)
    missing = api.client.get("/api/v1/categories")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = api.client.get("/api/v1/categories", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "Unauthorized"
    basic = api.client.get("/api/v1/categories", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    good = api.client.get("/api/v1/categories", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    for path in ("/api/v1/generate/gen_x", "/api/v1/images/gen_x", "/api/v1/runs", "/api/v1/favorites"):
        assert api.client.get(path).status_code == 401, path
    # Public: health (no secrets in it), the page, the OpenAPI docs.
    assert api.client.get("/health").status_code == 200
    assert api.client.get("/").status_code == 200 and api.client.get("/docs").status_code == 200
    assert TOKEN not in api.client.get("/health").text


def test_token_tiers_and_escalation_attempts(make_api) -> None:
    # The server's own token gets its tier (general); a second token is configured at "mature".
    api = make_api(api_token=TOKEN, api_tokens={"mature-token": "mature"})
    general = {"Authorization": f"Bearer {TOKEN}"}
    mature = {"Authorization": "Bearer mature-token"}

    def ids(headers: dict, **params: str) -> set[str]:
        response = api.client.get("/api/v1/categories", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["categories"]}

    assert "velvet" not in ids(general) and "velvet" in ids(mature) and "crimson" not in ids(mature)
    # A header or query/body tier above the caller's is ignored (never raises it).
    assert "velvet" not in ids({**general, "X-Policy-Tier": "explicit"})
    assert "velvet" not in ids(general, policy_tier="mature")
    assert "crimson" not in ids({**mature, "X-Policy-Tier": "explicit"})
    # ...and lowering works.
    assert "velvet" not in ids({**mature, "X-Policy-Tier": "general"})
    body = {"input": "a @velvet chair", "policy_tier": "explicit"}
    assert api.client.post("/compose", json=body, headers=general).status_code == 403
    assert api.client.post("/compose", json=body, headers=mature).status_code == 200
    lowered = api.client.post("/compose", json={**body, "policy_tier": "general"}, headers=mature)
    assert lowered.status_code == 403 and lowered.json()["violations"][0]["effective_tier"] == "general"
    header_lowered = api.client.post("/compose", json={"input": "a @velvet chair"},
                                     headers={**mature, "X-Policy-Tier": "general"})
    assert header_lowered.status_code == 403
    assert api.client.get("/categories/velvet", headers={**general, "X-Policy-Tier": "mature"}).status_code == 404
    assert api.client.get("/categories/velvet", headers=mature).status_code == 200
    # Inference never picks a category above the tier either.
    preview = api.client.post("/compose/preview", json={"input": "a plush velvet sofa"}, headers=general).json()
    assert "velvet" not in [c["id"] for c in preview["categories_inferred"]]
    bad = api.client.get("/api/v1/categories", headers={**general, "X-Policy-Tier": "root"})
    assert bad.status_code == 422 and "policy tier" in bad.json()["message"]
    gen = api.client.post("/generate", headers=general, json={"prompt": "a @velvet chair", "workflow": "tiny-sd15",
                                                              "policy_tier": "explicit"})
    assert gen.status_code == 403


def test_server_tier_setting_caps_open_servers(make_api) -> None:
    api = make_api(policy_tier="mature")
    ids = {c["id"] for c in api.client.get("/api/v1/categories").json()["categories"]}
    assert "velvet" in ids and "crimson" not in ids
    assert api.client.post("/compose", json={"input": "@crimson light"},
                           headers={"X-Policy-Tier": "explicit"}).status_code == 403


def test_open_server_answers_only_on_loopback(tmp_path: Path) -> None:
    from comfy_gen.api import create_app

    app = create_app(Settings(output_dir=tmp_path / "out", state_dir=tmp_path / "state"))
    with TestClient(app, base_url="http://192.0.2.10") as client:   # a request that arrived on a LAN address
        response = client.get("/api/v1/categories")
        assert response.status_code == 403 and "loopback" in response.json()["message"]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/v1/categories").status_code == 200
    tokened = create_app(Settings(output_dir=tmp_path / "out", state_dir=tmp_path / "state", api_token=TOKEN))
    with TestClient(tokened, base_url="http://192.0.2.10") as client:
        assert client.get("/api/v1/categories").status_code == 401
        assert client.get("/api/v1/categories", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def _serve_cli(args: list[str], env_extra: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra,
           "COMFY_GEN_OUTPUT_DIR": str(tmp_path / "out"), "COMFY_GEN_STATE_DIR": str(tmp_path / "state")}
    return subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "serve", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_serve_refuses_beyond_loopback_without_a_token(tmp_path: Path, host: str) -> None:
    proc = _serve_cli(["--host", host, "--port", "0"], {}, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert "only binds to loopback" in err and "COMFY_GEN_API_TOKEN" in err and "Traceback" not in err


def test_serve_starts_on_loopback_and_answers(tmp_path: Path) -> None:
    from comfy_gen.stack import free_port

    port = free_port()
    proc = _serve_cli(["--port", str(port)], {}, tmp_path)
    try:
        line = proc.stderr.readline()   # printed just before uvicorn binds
        assert f"http://127.0.0.1:{port}/" in line, line
        with httpx.Client(timeout=5) as client:
            for _ in range(600):   # uvicorn start-up: retry connecting until it listens
                try:
                    response = client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.ConnectError:
                    assert proc.poll() is None, proc.stderr.read()
                    import time

                    time.sleep(0.05)
            assert response.status_code == 200 and response.json()["status"] in ("healthy", "degraded")
    finally:
        proc.terminate()
        proc.wait(30)


def test_cors_off_by_default_and_configurable(make_api) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    closed = make_api()
    response = closed.client.options("/api/v1/compose", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    opened = make_api(api_cors_origins=["https://app.example"])
    allowed = opened.client.options("/api/v1/compose", headers={**preflight, "Origin": "https://app.example"})
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
    denied = opened.client.options("/api/v1/compose", headers=preflight)
    assert "access-control-allow-origin" not in denied.headers


@pytest.mark.parametrize("path", [
    "/api/v1/images/files/..%2F..%2Fetc%2Fpasswd", "/api/v1/images/files/%2Fetc%2Fpasswd",
    "/api/v1/images/files/../../../etc/passwd", "/api/v1/images/files/adhoc/missing.png",
    "/api/v1/recipes/..%2Fsecret/runs", "/api/v1/recipes/..", "/api/v1/images/..%2F..%2Fetc",
], ids=["dotdot-encoded", "absolute", "dotdot", "missing", "recipe-dotdot", "recipe-dots", "image-id"])
def test_names_are_confined_to_their_folders(api: ApiServer, tmp_path: Path, path: str) -> None:
    (tmp_path / "secret.yaml").write_text("name: secret\nworkflow: tiny-sd15.json\n")
    method = "POST" if path.endswith("/runs") else "GET"
    response = api.client.request(method, path)
    assert response.status_code == 404, response.text


def test_output_files_outside_images_and_sidecars_are_not_served(api: ApiServer) -> None:
    out = api.settings.output_dir
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "secret.txt").write_text("no")
    (out / "notes" / "link.png").symlink_to("/etc/hostname")
    assert api.client.get("/api/v1/images/files/notes/secret.txt").status_code == 404
    assert api.client.get("/api/v1/images/files/notes/link.png").status_code == 404
