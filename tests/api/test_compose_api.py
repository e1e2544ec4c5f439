"""Composition and categories over HTTP: shapes, aliases and error statuses."""

from __future__ import annotations

import pytest

from tests.api.conftest import ApiServer


@pytest.mark.parametrize("prefix", ["/api/v1", ""], ids=["v1", "bare"])
def test_compose_returns_recipe_categories_and_explanation(api: ApiServer, prefix: str) -> None:
    response = api.client.post(f"{prefix}/compose", json={"input": "a red @car at night", "dry_run": True})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["categories_used"] == ["car", "night"]
    assert data["recipe"]["positive_prompt"] and data["recipe"]["workflow"].endswith(".json")
    assert data["explanation"]["summary"] and data["explanation"]["steps"]
    assert data["recipe_hash"].startswith("sha256:") and data["policy_tier"] == "general"


def test_compose_preview_lists_tags_and_inferred_categories(api: ApiServer) -> None:
    response = api.client.post("/compose/preview", json={"input": "@portrait in the city at night"})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["tags_found"] == ["portrait"]
    assert {c["id"] for c in data["categories_inferred"]} >= {"night"}
    assert data["policy_violations"] == [] and data["unmatched_tags"] == []


@pytest.mark.parametrize("body, status, error", [
    ({"input": "hello there"}, 400, "CompositionError"),
    ({"input": "a @velvet sofa"}, 403, "PolicyViolation"),
    ({"input": ""}, 422, "RequestValidationError"),
    ({"input": "a @car", "max_categories": 11}, 422, "RequestValidationError"),
    ({"input": "a @car", "policy_tier": "godmode"}, 422, "RequestValidationError"),
    ({"input": "a @car", "surprise": 1}, 422, "RequestValidationError"),
    ({"input": "x" * 4001}, 422, "RequestValidationError"),
], ids=["no-categories", "policy", "empty", "max-categories", "bad-tier", "extra-field", "too-long"])
def test_compose_errors(api: ApiServer, body: dict, status: int, error: str) -> None:
    response = api.client.post("/api/v1/compose", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    if error == "PolicyViolation":
        violations = response.json()["violations"]
        assert [v["id"] for v in violations] == ["velvet"] and violations[0]["effective_tier"] == "general"


def test_categories_list_search_type_and_paging(api: ApiServer) -> None:
    data = api.client.get("/api/v1/categories").json()
    ids = [c["id"] for c in data["categories"]]
    assert "car" in ids and "velvet" not in ids and "crimson" not in ids   # above the tier: invisible
    assert data["total"] == len(ids) and data["policy_tier"] == "general"
    styles = api.client.get("/categories", params={"type": "style"}).json()
    assert styles["categories"] and {c["type"] for c in styles["categories"]} == {"style"}
    found = api.client.get("/categories", params={"search": "fog"}).json()
    assert found["categories"][0]["id"] == "fog"
    assert api.client.get("/categories", params={"search": "plush"}).json()["total"] == 0
    page = api.client.get("/categories", params={"limit": 2, "offset": 1}).json()
    assert [c["id"] for c in page["categories"]] == ids[1:3] and page["total"] == len(ids)
    bad = api.client.get("/categories", params={"type": "weird"})
    assert bad.status_code == 422 and "subject" in bad.json()["message"]
    assert api.client.get("/categories", params={"limit": 0}).status_code == 422


def test_category_detail_and_404(api: ApiServer) -> None:
    data = api.client.get("/api/v1/categories/fog").json()["category"]
    assert data["id"] == "fog" and data["prompts"]["positive_fragments"]["required"]
    for missing in ("nope", "velvet"):   # an id above the tier is as unknown as a missing one
        response = api.client.get(f"/api/v1/categories/{missing}")
        assert response.status_code == 404 and response.json()["error"] == "UnknownCategory"
