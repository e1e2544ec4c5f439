"""Gallery, favorites and extract-recipe over HTTP, with the catalog on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import yaml
from click.testing import CliRunner

from tests.api.conftest import ApiServer


def _generate(api: ApiServer, **body: Any) -> dict[str, Any]:
    response = api.client.post("/api/v1/generate", json={"prompt": "a lighthouse", "workflow": "tiny-sd15",
                                                         "steps": 2, "seed": 11, **body})
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["generation_id"])
    assert job["status"] == "completed", job
    return job


def test_generations_are_indexed_and_listed(catalog_api: ApiServer) -> None:
    api = catalog_api
    first = _generate(api)
    second = _generate(api, prompt="a @car at dusk", seed=12)
    listing = api.client.get("/api/v1/generations").json()
    ids = [g["generation_id"] for g in listing["generations"]]
    assert set(ids) == {first["generation_id"], second["generation_id"]} and listing["total"] == 2
    one = api.client.get(f"/generations/{second['generation_id']}").json()["generation"]
    assert one["categories"] == second["categories"] and "car" in one["categories"]
    assert one["recipe_hash"] == second["recipe_hash"]
    assert one["local_path"] == second["result"]["file"]   # relative to the output folder
    assert api.client.get(one["image_url"]).status_code == 200
    assert api.client.get("/api/v1/generations", params={"verdict": "passed"}).json()["total"] == 0
    assert api.client.get("/api/v1/generations", params={"verdict": "bogus"}).status_code == 422
    assert api.client.get("/api/v1/generations/gen_missing").status_code == 404


def test_favorites_lifecycle(catalog_api: ApiServer) -> None:
    api = catalog_api
    job = _generate(api)
    gid = job["generation_id"]
    created = api.client.post("/api/v1/favorites", json={"generation_id": gid, "rating": 4,
                                                         "feedback": "nice light", "tags": ["best"]})
    assert created.status_code == 201, created.text
    fav = created.json()
    assert fav["id"] == gid and fav["rating"] == 4 and fav["tags"] == ["best"]
    assert fav["image_url"] == f"/api/v1/images/{gid}" and not fav["generation"]["local_path"].startswith("/")
    listed = api.client.get("/favorites", params={"min_rating": 4}).json()
    assert [f["id"] for f in listed["favorites"]] == [gid] and listed["total"] == 1
    assert api.client.get("/favorites", params={"min_rating": 5}).json()["total"] == 0
    rated = api.client.put(f"/api/v1/favorites/{gid}/rating", json={"rating": 5, "feedback": "even better"})
    assert rated.status_code == 200 and rated.json()["rating"] == 5 and rated.json()["feedback"] == "even better"
    assert api.client.get("/api/v1/generations").json()["generations"][0]["rating"] == 5
    assert api.client.delete(f"/api/v1/favorites/{gid}").json() == {"message": "Favorite removed", "id": gid}
    assert api.client.delete(f"/api/v1/favorites/{gid}").status_code == 404
    assert api.client.put(f"/api/v1/favorites/{gid}/rating", json={"rating": 3}).status_code == 404


def test_favorite_errors(catalog_api: ApiServer) -> None:
    api = catalog_api
    for body, status in [({"generation_id": "gen_missing", "rating": 3}, 404),
                         ({"generation_id": "x", "rating": 6}, 422),
                         ({"generation_id": "x", "tags": ["t"] * 21}, 422),
                         ({"generation_id": "../../etc", "rating": 3}, 404)]:
        response = api.client.post("/api/v1/favorites", json=body)
        assert response.status_code == status, (body, response.text)


def test_extract_recipe_saves_a_recipe_that_validates(catalog_api: ApiServer) -> None:
    from comfy_gen.cli import cli

    api = catalog_api
    job = _generate(api, prompt="a red @car", steps=3, seed=21)
    gid = job["generation_id"]
    api.client.post("/api/v1/favorites", json={"generation_id": gid, "rating": 5})
    preview = api.client.post(f"/api/v1/favorites/{gid}/extract-recipe", json={"target_categories": ["landscape"]})
    assert preview.status_code == 200, preview.text
    data = preview.json()
    assert data["saved"] is None and data["recipe"]["categories"] == ["landscape"]
    assert any("car" in a for a in data["adaptations"]) and data["source_favorite"] == gid
    saved = api.client.post(f"/api/v1/favorites/{gid}/extract-recipe", json={"save_as": "red-car"}).json()
    assert saved["saved"] == {"name": "red-car", "file": "red-car.yaml"}
    path = api.settings.recipes_dir / "red-car.yaml"
    recipe = yaml.safe_load(path.read_text())
    assert recipe["workflow"] == "tiny-sd15.json" and recipe["seeds"] == [21] and recipe["categories"] == ["car"]
    assert recipe["defaults"]["steps"] == 3
    result = CliRunner().invoke(cli, ["recipe", "validate", str(path)])
    assert result.exit_code == 0, result.output
    again = api.client.post(f"/api/v1/favorites/{gid}/extract-recipe", json={"save_as": "red-car"})
    assert again.status_code == 422 and "already exists" in again.json()["message"]
    # The saved recipe is a recipe the API can run: it is listed.
    assert "red-car" in [r["name"] for r in api.client.get("/api/v1/recipes").json()["recipes"]]


def test_extract_recipe_errors(catalog_api: ApiServer) -> None:
    api = catalog_api
    gid = _generate(api)["generation_id"]
    cases = [({"save_as": "../evil"}, 422), ({"target_categories": ["velvet"]}, 403),
             ({"target_categories": ["nope"]}, 422)]
    for body, status in cases:
        response = api.client.post(f"/api/v1/favorites/{gid}/extract-recipe", json=body)
        assert response.status_code == status, (body, response.text)
    assert api.client.post("/api/v1/favorites/gen_missing/extract-recipe", json={}).status_code == 404
