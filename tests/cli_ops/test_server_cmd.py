"""`comfy-gen server start|stop|restart|status` with the emulator as a fake ComfyUI.

The fake install is a folder whose main.py runs ``python -m comfy_gen.emulator``
in-process (via runpy), so the process command line still names main.py, as a
real ComfyUI's does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comfy_gen.stack import free_port

from comfy_gen.config import Settings
from comfy_gen.server_control import LocalServer, url_from_args
from tests.cli_ops.helpers import run_cli
from tests.conftest import REPO_ROOT

FAKE_MAIN = """\
import runpy, sys
sys.path.insert(0, {repo!r})
port = sys.argv[sys.argv.index("--port") + 1]
print("fake ComfyUI on port", port, flush=True)
sys.argv = ["comfy_gen.emulator", "--port", port, "--step-time", "0.01"]
runpy.run_module("comfy_gen.emulator", run_name="__main__", alter_sys=True)
"""

BROKEN_MAIN = """\
import sys
print("loading custom nodes...", flush=True)
print("RuntimeError: CUDA is not available", file=sys.stderr, flush=True)
sys.exit(3)
"""



@pytest.fixture
def fake_comfyui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings env for a fake ComfyUI install; stops whatever it started."""
    install = tmp_path / "ComfyUI"
    install.mkdir()
    (install / "main.py").write_text(FAKE_MAIN.format(repo=str(REPO_ROOT)))
    port = free_port()
    monkeypatch.setenv("COMFY_GEN_COMFYUI_PATH", str(install))
    monkeypatch.setenv("COMFY_GEN_COMFYUI_PYTHON", sys.executable)
    monkeypatch.setenv("COMFY_GEN_COMFYUI_ARGS", json.dumps(["--listen", "127.0.0.1", "--port", str(port)]))
    yield install, f"http://127.0.0.1:{port}"
    run_cli("server", "stop", "--timeout", "5")


def test_start_status_restart_stop(fake_comfyui, tmp_path: Path) -> None:
    install, url = fake_comfyui
    code, out, err = run_cli("server", "start", "--timeout", "60")
    assert code == 0, err
    assert f"at {url}" in out
    pid_file = tmp_path / "state" / "comfyui.pid"
    pid = json.loads(pid_file.read_text())["pid"]

    code, out, _ = run_cli("server", "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["running"] and status["healthy"] and status["pid"] == pid

    code, out, _ = run_cli("server", "start")  # already running: no second process
    assert code == 0 and f"pid {pid}" in out

    code, out, err = run_cli("server", "restart", "--timeout", "60")
    assert code == 0, err
    new_pid = json.loads(pid_file.read_text())["pid"]
    assert new_pid != pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    code, out, _ = run_cli("server", "stop")
    assert code == 0 and "stopped" in out
    assert not pid_file.exists()
    code, out, _ = run_cli("server", "status")
    assert code == 1 and "not running" in out and "does not answer" in out
    code, out, _ = run_cli("server", "stop")
    assert code == 0 and "was not running" in out
    assert "fake ComfyUI on port" in (tmp_path / "state" / "comfyui.log").read_text()


def test_start_failure_shows_the_log_tail(fake_comfyui, tmp_path: Path) -> None:
    install, _ = fake_comfyui
    (install / "main.py").write_text(BROKEN_MAIN)
    code, _, err = run_cli("server", "start", "--timeout", "20")
    assert code != 0 and "Traceback" not in err
    assert "exited with code 3" in err and "CUDA is not available" in err
    assert not (tmp_path / "state" / "comfyui.pid").exists()


def test_start_timeout_stops_the_process(fake_comfyui, tmp_path: Path) -> None:
    install, url = fake_comfyui
    (install / "main.py").write_text("import time\nprint('hanging', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    code, _, err = run_cli("server", "start", "--timeout", "1")
    assert code == 1 and "did not answer" in err and "hanging" in err
    assert time.monotonic() - started < 15
    assert not (tmp_path / "state" / "comfyui.pid").exists()


def test_configuration_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli("server", "start")
    assert code == 2 and "COMFY_GEN_COMFYUI_PATH" in err
    monkeypatch.setenv("COMFY_GEN_COMFYUI_PATH", str(tmp_path))
    code, _, err = run_cli("server", "start")
    assert code == 2 and "no main.py" in err
    (tmp_path / "main.py").write_text("")
    monkeypatch.setenv("COMFY_GEN_COMFYUI_PYTHON", "no-such-python-3")
    code, _, err = run_cli("server", "restart")
    assert code == 2 and "not found" in err


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    settings = Settings(comfyui_path=tmp_path, state_dir=tmp_path / "state",
                        comfyui_url="http://127.0.0.1:9", comfyui_args=[])
    server = LocalServer(settings)
    server.state_dir.mkdir()
    # Our own pid is alive but is not a ComfyUI main.py: never signal it.
    server.pid_path.write_text(json.dumps({"pid": os.getpid()}))
    assert server.status().running is False
    assert server.stop() is False
    assert not server.pid_path.exists()


@pytest.mark.parametrize("args,url", [
    (["--listen", "127.0.0.1", "--port", "8190"], "http://127.0.0.1:8190"),
    (["--port=9000"], "http://127.0.0.1:9000"),
    (["--listen", "--port", "8188"], "http://127.0.0.1:8188"),
    (["--listen", "0.0.0.0,::"], "http://127.0.0.1:8188"),
    (["--listen", "::1", "--port", "1"], "http://[::1]:1"),
    (["--cpu"], "http://example:1"),
])
def test_url_from_args(args: list[str], url: str) -> None:
    assert url_from_args(args, "http://example:1/") == url


def test_scripts_are_thin_wrappers(tmp_path: Path) -> None:
    import runpy

    mod = runpy.run_path(str(REPO_ROOT / "scripts" / "cancel_generation.py"))
    to_cli = mod["to_cli_args"]
    assert to_cli([]) == ["cancel", "--all-mine"]
    assert to_cli(["--list", "--url", "http://h:1"]) == ["queue", "--url", "http://h:1"]
    assert to_cli(["--prompt-id", "abc", "--json"]) == ["cancel", "abc", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY_GEN_")}
    env["COMFY_GEN_STATE_DIR"] = str(tmp_path / "state")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "check_comfyui_status.py"),
                           "--url", "http://127.0.0.1:9"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and "does not answer" in proc.stdout
