"""`comfy-gen up` as a user runs it: the UI answers, the worker is registered, a taken
port is refused, and every stop signal ends everything it started."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from comfy_gen import procs
from comfy_gen.stack import RECORDS, free_port


#: What a browser sends when it opens a page (the UI answers its routes to such requests).
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


class Lines:
    """Reads a process's output on a thread, so waiting on a line has a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return "".join(self.seen)
        raise AssertionError(f"{text!r} not printed; output:\n{''.join(self.seen)}")


def _up(tmp_path: Path, port: int, web_port: int = 0) -> tuple[subprocess.Popen[str], Path]:
    env = {k: v for k, v in os.environ.items() if k not in ("COMFY_GEN_COMFYUI_URL", "PREFECT_API_URL")}
    home = tmp_path / "prefect-up"
    env["PREFECT_HOME"] = str(home)  # `up` starts the emulator: no ComfyUI configured
    proc = subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "up", "--port", str(port),
                             "--web-port", str(web_port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    return proc, home


def _recorded_groups(home: Path) -> dict[str, int]:
    records = [json.loads(p.read_text()) for p in (home / RECORDS).glob("*.json")]
    return {r["name"]: int(r["pid"]) for r in records}


def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_comfy_gen_up_starts_the_local_stack_and_stops_it_on_ctrl_c(tmp_path: Path, sig: signal.Signals) -> None:
    port, web_port = free_port(), free_port()
    proc, home = _up(tmp_path, port, web_port)
    lines = Lines(proc)
    try:
        text = lines.wait_for("Press Ctrl-C", timeout=240)
        assert "BUILT-IN EMULATOR" in text
        assert f"Prefect UI:  http://127.0.0.1:{port}" in text
        # The web page runs too, and the worker links run artifacts to it (pictures without S3).
        web = f"http://127.0.0.1:{web_port}"
        assert f"Web page:    {web}" in text
        assert httpx.get(f"{web}/health", timeout=10).status_code == 200
        api = f"http://127.0.0.1:{port}/api"
        assert httpx.get(f"{api}/health", timeout=10).status_code == 200
        for page in ("/", "/runs"):  # the UI itself, not {"detail":"Not Found"}
            response = httpx.get(f"http://127.0.0.1:{port}{page}", headers=BROWSER, timeout=10,
                                  follow_redirects=True)
            assert response.status_code == 200, page
            assert response.headers["content-type"].startswith("text/html"), page
            assert "<html" in response.text.lower(), page
        # The UI's pages call this server's API, not Prefect's default 127.0.0.1:4200.
        ui_settings = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()
        assert ui_settings["api_url"] == api, ui_settings
        pool = httpx.get(f"{api}/work_pools/comfy-gen", timeout=10).json()
        assert pool["type"] == "process"
        workers = httpx.post(f"{api}/work_pools/comfy-gen/workers/filter", json={}, timeout=10).json()
        assert [w["name"] for w in workers] == [f"comfy-gen-{proc.pid}-{port}"]
        names = {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
        assert {"on-demand", "nightly"} <= names
        groups = _recorded_groups(home)
        assert set(groups) == {"server", "web", "worker"}
        assert all(procs.group_alive(pgid) for pgid in groups.values())
        worker_env = Path(f"/proc/{groups['worker']}/environ").read_bytes().split(b"\0")
        assert f"COMFY_GEN_PUBLIC_URL={web}".encode() in worker_env
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(sig)
    try:
        seconds = _wait(lambda: proc.poll() is not None, 60, f"`up` to exit after {sig.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"`up` stopped {seconds:.1f} s after {sig.name}")
    assert proc.returncode == 0, lines.seen
    for name, pgid in groups.items():
        assert not procs.group_alive(pgid), f"the {name} outlived `up`"
    assert not list((home / RECORDS).glob("*.json"))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{web}/health", timeout=2)


def test_up_refuses_a_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc, home = _up(tmp_path, port)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert f"Port {port}" in out and "--port" in out
    assert "Traceback" not in out
    assert "EMULATOR" not in out, "nothing may be started when the port is taken"
    assert not list((home / RECORDS).glob("*.json"))
