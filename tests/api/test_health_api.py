"""GET /health: healthy with everything up, degraded (never 500) with reasons when a part is down."""

from __future__ import annotations

from comfy_gen.stack import free_port
from tests.api.conftest import ApiServer


def test_health_is_healthy_with_the_emulator(api: ApiServer) -> None:
    for path in ("/health", "/api/v1/health"):
        data = api.client.get(path).json()
        assert data["status"] == "healthy", data
        assert data["comfyui_available"] and data["catalog_available"] and data["reasons"] == []
        assert data["checks"]["prefect"]["ok"] and data["version"]


def test_health_degraded_with_reasons_never_500(make_api, tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    api = make_api(comfyui_url=f"http://user:pw@127.0.0.1:{free_port()}",
                   database_url="postgresql+psycopg://u:topsecret@127.0.0.1:1/none")
    response = api.client.get("/health")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "degraded" and not data["comfyui_available"] and not data["catalog_available"]
    assert any(r.startswith("comfyui:") for r in data["reasons"]) and any(r.startswith("catalog:") for r in data["reasons"])
    assert "topsecret" not in response.text and "pw@" not in response.text
    # The catalog being down is a 503 on its endpoints, not a 500.
    assert api.client.get("/api/v1/generations").status_code == 503
