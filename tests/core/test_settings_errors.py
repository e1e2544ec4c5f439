"""Bad COMFY_GEN_* values: one line per problem, named by the env var, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_gen.config import get_settings
from comfy_gen.errors import ConfigError


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        get_settings()
    return str(info.value)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("COMFY_GEN_GPU_LIMIT", "abc", "COMFY_GEN_GPU_LIMIT='abc': Input should be a valid integer"),
    ("COMFY_GEN_GPU_LIMIT", "0", "COMFY_GEN_GPU_LIMIT='0': Input should be greater than or equal to 1"),
    # BACKENDS values are never echoed: a broken one may hold credentials.
    ("COMFY_GEN_BACKENDS", "not json", "COMFY_GEN_BACKENDS: must be a JSON object"),
    ("COMFY_GEN_BACKENDS", '{"a": 1}', "COMFY_GEN_BACKENDS[a]: must be a URL or an object like"),
    ("COMFY_GEN_INPUT_DIRS", "[oops", "COMFY_GEN_INPUT_DIRS='[oops': must be a JSON list of folders"),
    ("COMFY_GEN_COMFYUI_ARGS", '--port "1', "COMFY_GEN_COMFYUI_ARGS='--port \"1': must be a JSON list"),
    ("COMFY_GEN_POLICY_TIER", "xxx", "COMFY_GEN_POLICY_TIER='xxx': Input should be 'general'"),
])
def test_bad_setting_names_the_variable_and_the_problem(monkeypatch: pytest.MonkeyPatch, key: str,
                                                         value: str, expected: str) -> None:
    text = _error(monkeypatch, **{key: value})
    assert expected in text
    assert "errors.pydantic.dev" not in text and "EnvSettingsSource" not in text
    assert ".env" in text  # the hint says where settings come from


def test_every_bad_setting_is_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _error(monkeypatch, COMFY_GEN_GPU_LIMIT="abc", COMFY_GEN_HTTP_TIMEOUT="-1")
    assert "(2 problem(s))" in text
    assert "COMFY_GEN_GPU_LIMIT" in text and "COMFY_GEN_HTTP_TIMEOUT" in text


def test_secret_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A structured value where a string is expected: the error must not quote it.
    monkeypatch.setenv("COMFY_GEN_MINIO_SECRET_KEY", "x" * 10)
    from comfy_gen.config import Settings, settings_error
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        Settings(minio_secret_key=["hunter2-secret"])  # type: ignore[arg-type]
    text = str(settings_error(info.value))
    assert "COMFY_GEN_MINIO_SECRET_KEY" in text and "hunter2" not in text


def test_folder_lists_and_args_accept_plain_strings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Users write PATH-style folder lists and shell-style argument lines, not only JSON.
    monkeypatch.setenv("COMFY_GEN_INPUT_DIRS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    monkeypatch.setenv("COMFY_GEN_CATEGORIES_PATHS", str(tmp_path / "cats"))
    monkeypatch.setenv("COMFY_GEN_COMFYUI_ARGS", "--listen 127.0.0.1 --port 8190")
    monkeypatch.setenv("COMFY_GEN_BACKENDS", '{"gpu1": "http://127.0.0.1:8190"}')
    settings = get_settings()
    assert settings.input_dirs == [tmp_path / "a", tmp_path / "b"]
    assert settings.categories_paths == [tmp_path / "cats"]
    assert settings.comfyui_args == ["--listen", "127.0.0.1", "--port", "8190"]
    assert settings.backend_url("gpu1") == "http://127.0.0.1:8190"


def test_json_lists_still_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMFY_GEN_INPUT_DIRS", f'["{tmp_path}"]')
    monkeypatch.setenv("COMFY_GEN_COMFYUI_ARGS", '["--port", "8190"]')
    settings = get_settings()
    assert settings.input_dirs == [tmp_path]
    assert settings.comfyui_args == ["--port", "8190"]


def test_cli_reports_bad_settings_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY_GEN_")}
    env["COMFY_GEN_BACKENDS"] = "not json"
    proc = subprocess.run([sys.executable, "-m", "comfy_gen.cli", "models"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "COMFY_GEN_BACKENDS: must be a JSON object" in proc.stderr
