"""Validation checks over HTTP: a ``validation.checks`` list runs those validators
(technical on the emulator's picture); a bad one is refused before any job, naming the field."""

from __future__ import annotations

import pytest

from comfy_gen.emulator import Emulator
from tests.api.conftest import ApiServer

TINY = {"prompt": "a lighthouse at dusk", "workflow": "tiny-sd15", "steps": 2, "seed": 7}


def test_generate_body_checks_run_and_show_each_verdict(api: ApiServer, emu: Emulator) -> None:
    response = api.client.post("/api/v1/generate", json={**TINY, "validation": {"checks": ["technical"]}})
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["generation_id"])
    result = job["result"]
    assert job["status"] == "completed" and result["status"] == "passed"
    [verdict] = result["attempts"][0]["verdicts"]
    assert verdict["validator"] == "technical" and verdict["passed"] and verdict["scores"]["technical_std"] > 5


@pytest.mark.parametrize("checks, message", [
    (["nope"], "validation.checks[0]: Unknown validator 'nope'"),
    ([{"name": "technical", "min_mean": "dark"}], "validation.checks[0]: technical option 'min_mean'"),
    (["technical", "technical"], "validation.checks[1]: validator 'technical' is listed twice"),
])
def test_bad_checks_are_refused_naming_the_field(api: ApiServer, checks: list, message: str) -> None:
    response = api.client.post("/api/v1/generate", json={**TINY, "validation": {"checks": checks}})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "UsageError" and message in response.json()["message"]
