"""The generation service (comfy_gen.service) against the emulator: typed in, typed out."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy_gen.config import Settings, get_settings
from comfy_gen.emulator import Emulator
from comfy_gen.errors import ExecutionInterrupted, PathNotAllowed
from comfy_gen.exit_codes import EXIT_CONFIG_ERROR, EXIT_VALIDATION_FAILED, exit_code_for
from comfy_gen.params import GenerationParams
from comfy_gen.service import (CancelToken, GenerateRequest, GenerateResult, InputImage, ValidationOptions,
                               generate)
from tests.generate.helpers import chunks

TINY = "tiny-sd15"


def _request(**changes: Any) -> GenerateRequest:
    params = GenerationParams(prompt="a lighthouse", seed=3, steps=3)
    return GenerateRequest(**{"workflow": TINY, "params": params, **changes})


def _history_size(emu: Emulator) -> int:
    return int(emu.stats()["history_size"])


def test_generate_returns_a_typed_result_and_streams_events(gen_env: Emulator, tmp_path: Path) -> None:
    events: list[Any] = []
    result = generate(_request(output="svc.png"), settings=get_settings(), on_event=events.append)
    assert isinstance(result, GenerateResult)
    # A confined output is relative to the output folder, never the process's cwd.
    assert result.file == (tmp_path / "output" / "svc.png").resolve() and result.file.is_file()
    assert result.status == "unvalidated" and result.upload == "disabled" and result.key is None
    assert result.best is not None and result.best.params.seed == 3 and result.prompt_id == result.best.prompt_id
    assert result.sidecar == result.file.with_name("svc.png.json")
    types = [e.type for e in events]
    assert types[0] == "execution_start" and types.count("progress") == 3 and types[-1] == "attempt"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "unvalidated" and data["file"] == str(result.file)
    assert [a["attempt"] for a in data["attempts"]] == [1] and "files" not in data["attempts"][0]
    # The sidecar records the stored file's size: after the metadata went in.
    side = json.loads(result.sidecar.read_text())
    assert side["storage"]["file_size_bytes"] == result.file.stat().st_size
    embedded = json.loads(chunks(result.file)["comfygen_metadata"])
    assert embedded["storage"]["file_size_bytes"] == result.file.stat().st_size


def test_dry_run_queues_nothing(gen_env: Emulator) -> None:
    before = _history_size(gen_env)
    events: list[Any] = []
    result = generate(_request(dry_run=True, params=GenerationParams()), settings=get_settings(),
                      on_event=events.append)
    assert result.status == "dry_run" and result.file is None and result.workflow == TINY
    assert [e.type for e in events] == ["info"] and "nothing was queued" in events[0].message
    assert _history_size(gen_env) == before


def test_cancel_token_cancels_our_job_and_removes_output(gen_env: Emulator, tmp_path: Path) -> None:
    gen_env.faults.update({"step_time": 0.2})
    token = CancelToken()
    seen: list[Any] = []

    def on_event(event: Any) -> None:
        seen.append(event)
        if event.type == "progress":
            token.cancel()  # as an API request handler would, from its own thread

    with pytest.raises(ExecutionInterrupted):
        generate(_request(output="cancelled.png", params=GenerationParams(prompt="a lake", steps=40)),
                 settings=get_settings(), on_event=on_event, cancel=token)
    prompt_id = next(e.prompt_id for e in seen if e.type == "execution_start")
    notices = [e.message for e in seen if e.type == "info"]
    assert any(m.startswith(f"Cancelled our job {prompt_id}") for m in notices)
    entry = httpx.get(f"{gen_env.url}/history/{prompt_id}").json()[prompt_id]
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
    assert not (tmp_path / "output" / "cancelled.png").exists()
    assert not list((tmp_path / "state" / "work").rglob("*"))


def test_a_cancelled_token_queues_nothing(gen_env: Emulator) -> None:
    token = CancelToken()
    token.cancel()
    before = _history_size(gen_env)
    with pytest.raises(ExecutionInterrupted):
        generate(_request(), settings=get_settings(), cancel=token)
    assert _history_size(gen_env) == before


def test_renders_wait_behind_the_gpu_bound(fresh_emulator: Emulator) -> None:
    """Two generations at once with gpu_limit=1: the second is queued only after the first finished."""
    fresh_emulator.faults.update({"step_time": 0.05})
    settings = get_settings().model_copy(update={"comfyui_url": fresh_emulator.url, "gpu_limit": 1,
                                                 "gpu_gate": "none"})
    results: list[GenerateResult] = []
    second = threading.Thread(target=lambda: results.append(
        generate(_request(params=GenerationParams(prompt="two", seed=2, steps=4)), settings=settings)))

    def start_second_while_rendering(event: Any) -> None:
        if event.type == "progress" and not second.is_alive() and not results:
            second.start()

    results.append(generate(_request(params=GenerationParams(prompt="one", seed=1, steps=4)), settings=settings,
                            on_event=start_second_while_rendering))
    second.join(timeout=60)
    assert len(results) == 2 and all(r.status == "unvalidated" for r in results)
    assert fresh_emulator.stats()["max_outstanding"] == 1


def test_best_effort_is_a_result_with_exit_3_semantics(clip_env: Emulator) -> None:
    request = _request(validation=ValidationOptions(enabled=True, positive_threshold=99), max_attempts=2,
                       output="best.png")
    events: list[Any] = []
    result = generate(request, settings=get_settings(), on_event=events.append)
    assert result.status == "best_effort" and result.file is not None and result.file.is_file()
    assert len(result.attempts) == 2 and [e.type for e in events].count("attempt") == 2
    error = result.validation_error()
    assert error is not None and exit_code_for(error) == EXIT_VALIDATION_FAILED
    assert f"kept at {result.file}" in str(error)


def test_old_scale_threshold_is_a_warning_in_the_result(clip_env: Emulator) -> None:
    request = _request(validation=ValidationOptions(enabled=True, positive_threshold=0.2))
    result = generate(request, settings=get_settings())
    assert any("old 0-1 scale" in w for w in result.warnings)


CONFINED_ESCAPES = [
    pytest.param({"output": "../escape.png"}, id="output-relative"),
    pytest.param({"output": "/tmp/car.png"}, id="output-absolute"),
    pytest.param({"workflow": "../pyproject.toml"}, id="workflow"),
    pytest.param({"input_image": InputImage("/etc/hostname")}, id="input-image"),
]


@pytest.mark.parametrize("changes", CONFINED_ESCAPES)
def test_a_confined_request_cannot_leave_its_folders(gen_env: Emulator, changes: dict[str, Any]) -> None:
    before = _history_size(gen_env)
    with pytest.raises(PathNotAllowed) as info:
        generate(_request(**changes), settings=get_settings())
    assert "outside the allowed folders" in str(info.value) and exit_code_for(info.value) == EXIT_CONFIG_ERROR
    assert _history_size(gen_env) == before


def test_confined_paths_inside_their_folders_work(gen_env: Emulator, tmp_path: Path, input_png: Path) -> None:
    settings = Settings(comfyui_url=gen_env.url, output_dir=tmp_path / "output", state_dir=tmp_path / "state",
                        input_dirs=[tmp_path])
    result = generate(_request(workflow="sd15-img2img", output="sub/in.png",
                               input_image=InputImage(str(input_png))), settings=settings)
    assert result.file == (tmp_path / "output" / "sub" / "in.png").resolve()
