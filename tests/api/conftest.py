"""API fixtures: the app served by a real uvicorn on a free loopback port, pointed at the emulator."""

from __future__ import annotations

import contextvars
import shutil
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from comfy_gen.config import Settings
from comfy_gen.emulator import Emulator

REPO = Path(__file__).resolve().parents[2]

#: Test-only categories above the general tier (the shipped library is all "general").
CATEGORIES = {
    "velvet.yaml": ("velvet", "style", "mature", ["velvet", "plush"]),
    "crimson.yaml": ("crimson", "modifier", "explicit", ["crimson", "scarlet"]),
}

TINY_RECIPE = """\
name: tiny
description: Two seeds of one prompt on the tiny workflow.
workflow: tiny-sd15.json
defaults:
  steps: 2
prompts:
  - a small lighthouse
seeds: [1, 2]
output:
  contact_sheet: true
"""


def write_categories(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (cid, ctype, tier, words) in CATEGORIES.items():
        (folder / name).write_text(textwrap.dedent(f"""\
            schema_version: 1.0.0
            id: {cid}
            type: {ctype}
            display_name: {cid.title()}
            description: A test category at tier {tier}
            policy_tier: {tier}
            keywords:
              primary: [{", ".join(words)}]
            prompts:
              positive_fragments:
                required: [{cid} tones]
            """))
    return folder


@dataclass
class ApiServer:
    url: str
    app: Any
    settings: Settings
    client: httpx.Client

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait on the job's own completion event, then read it through the API."""
        assert self.ctx.jobs.get(job_id).wait(timeout), f"job {job_id} did not finish"
        response = self.client.get(f"/api/v1/generate/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()


def serve(app: Any, host: str = "127.0.0.1") -> tuple[Any, threading.Thread, int]:
    import uvicorn

    from comfy_gen.stack import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    # The server runs in a copy of the caller's context: a Prefect settings context the caller
    # entered (temporary_settings) is the one the app's handlers see.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(server.run,), name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn sets it once the socket listens
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, port


@pytest.fixture
def api_dirs(tmp_path: Path) -> dict[str, Path]:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "tiny.yaml").write_text(TINY_RECIPE)
    return {"output_dir": tmp_path / "output", "state_dir": tmp_path / "state", "recipes_dir": recipes,
            "categories": write_categories(tmp_path / "categories")}


@pytest.fixture
def make_api(emu: Emulator, api_dirs: dict[str, Path]) -> Iterator[Callable[..., ApiServer]]:
    """Start API servers: ``make_api(**settings)``; each is stopped (jobs cancelled) at teardown."""
    from comfy_gen.api import create_app

    running: list[tuple[Any, threading.Thread, httpx.Client]] = []

    def make(*, token: str | None = None, catalog: Any = None, **overrides: Any) -> ApiServer:
        values: dict[str, Any] = {
            "comfyui_url": emu.url, "output_dir": api_dirs["output_dir"], "state_dir": api_dirs["state_dir"],
            "recipes_dir": api_dirs["recipes_dir"], "categories_paths": [api_dirs["categories"]],
            "workflows_dir": REPO / "workflows",
        }
        values.update(overrides)
        settings = Settings(**values)
        app = create_app(settings, catalog=catalog)
        server, thread, port = serve(app)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=url, timeout=60, headers=headers)
        running.append((server, thread, client))
        return ApiServer(url=url, app=app, settings=settings, client=client)

    yield make
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def api(make_api: Callable[..., ApiServer]) -> ApiServer:
    return make_api()


@pytest.fixture
def copy_workflows(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    shutil.copytree(REPO / "workflows", target)
    return target


@pytest.fixture(autouse=True)
def _close_shared_catalogs() -> Iterator[None]:
    """The catalog the API and the service share is per process: close it after each test."""
    yield
    from comfy_gen.catalog import close_shared

    close_shared()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_api(request: pytest.FixtureRequest, make_api: Callable[..., ApiServer]) -> ApiServer:
    """An API server whose catalog is a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return make_api()
    return make_api(database_url=request.getfixturevalue("postgres_url"))
