"""Start, stop and inspect a local ComfyUI process (``comfy-gen server ...``).

The process is ``<comfyui_python> main.py <comfyui_args>`` run in ``comfyui_path``,
in its own process group (so stop can end the whole group; see ``procs``), with output
appended to ``<state_dir>/comfyui.log``. ``<state_dir>/comfyui.pid`` records what
we started; stop only signals a pid whose command line still names ``main.py``, so
a recycled pid is never killed.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_gen import procs
from comfy_gen.config import Settings
from comfy_gen.errors import ComfyUIError, ComfyUITimeout, ComfyUIUnavailable, ConfigError

log = logging.getLogger(__name__)

PID_FILE = "comfyui.pid"
LOG_FILE = "comfyui.log"
#: Popen objects of servers this process started, so they can be reaped.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ServerStatus:
    """Process state (from the pid file) and API health (GET /system_stats)."""

    url: str
    pid: int | None
    running: bool
    healthy: bool
    log_path: Path

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "pid": self.pid, "running": self.running,
                "healthy": self.healthy, "log": str(self.log_path)}


def url_from_args(args: list[str], default: str) -> str:
    """The URL ComfyUI will answer on, from ``--listen``/``--port`` in its args."""
    host, port = None, None
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--listen="):
            host = arg.split("=", 1)[1]
        elif arg == "--listen":
            host = value if value and not value.startswith("--") else "0.0.0.0"
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
        elif arg == "--port" and value:
            port = value
    if host is None and port is None:
        return default.rstrip("/")
    host = (host or "127.0.0.1").split(",")[0]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: probe over loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or 8188}"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _pid_alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    return procs.pid_alive(pid)


def _is_comfyui(pid: int) -> bool:
    """Whether ``pid`` still runs main.py (Linux /proc); assume yes elsewhere."""
    cmdline = procs.command_line(pid)
    if cmdline is None:
        return not sys.platform.startswith("linux")
    return "main.py" in cmdline


class LocalServer:
    """A ComfyUI install on this machine, driven by comfy-gen settings."""

    def __init__(self, settings: Settings, *, url: str | None = None) -> None:
        self.path = Path(settings.comfyui_path).expanduser() if settings.comfyui_path else None
        self.python = settings.comfyui_python
        self.args = list(settings.comfyui_args)
        self.state_dir = Path(settings.state_dir)
        self.url = (url or url_from_args(self.args, settings.comfyui_url)).rstrip("/")

    @property
    def pid_path(self) -> Path:
        return self.state_dir / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    def _read_pid(self) -> int | None:
        try:
            return int(json.loads(self.pid_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _live_pid(self) -> int | None:
        pid = self._read_pid()
        if pid is not None and _pid_alive(pid) and _is_comfyui(pid):
            return pid
        return None

    def _healthy(self) -> bool:
        from comfy_gen.comfyui import ComfyUIClient

        with ComfyUIClient(self.url, timeout=2, connect_timeout=1, retries=1) as client:
            return client.is_available()

    def status(self) -> ServerStatus:
        pid = self._live_pid()
        return ServerStatus(url=self.url, pid=pid, running=pid is not None,
                            healthy=self._healthy(), log_path=self.log_path)

    def _command(self) -> list[str]:
        if self.path is None:
            raise ConfigError("No local ComfyUI configured",
                              hint="Set COMFY_GEN_COMFYUI_PATH to the folder that holds ComfyUI's main.py.")
        if not (self.path / "main.py").is_file():
            raise ConfigError(f"{self.path} has no main.py; is it a ComfyUI folder?",
                              hint="Point COMFY_GEN_COMFYUI_PATH at the ComfyUI checkout.")
        python = shutil.which(self.python) or (self.python if Path(self.python).is_file() else None)
        if python is None:
            raise ConfigError(f"Python interpreter {self.python!r} not found",
                              hint="Set COMFY_GEN_COMFYUI_PYTHON to ComfyUI's python (e.g. its venv).")
        return [python, "main.py", *self.args]

    def start(self, *, timeout: float = 120.0) -> ServerStatus:
        """Start ComfyUI and wait until /system_stats answers (or raise with the log tail)."""
        command = self._command()
        if self._live_pid() is not None:
            return self.status()
        if self._healthy():
            raise ComfyUIError(f"Something already answers at {self.url} (not started by comfy-gen)",
                               url=self.url, hint="Stop it, or change --port in COMFY_GEN_COMFYUI_ARGS.")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_fh:
            log_fh.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                         f"{' '.join(command)}\n".encode())
            log_fh.flush()
            proc = procs.spawn_group(command, cwd=self.path, stdout=log_fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _children[proc.pid] = proc
        self.pid_path.write_text(json.dumps({"pid": proc.pid, "url": self.url, "command": command,
                                             "started_at": time.time()}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._forget(proc.pid)
                raise ComfyUIUnavailable(
                    f"ComfyUI exited with code {proc.returncode} during start-up.\n"
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}", url=self.url)
            if self._healthy():
                log.info("ComfyUI (pid %d) answers at %s", proc.pid, self.url)
                return ServerStatus(url=self.url, pid=proc.pid, running=True, healthy=True,
                                    log_path=self.log_path)
            time.sleep(0.25)
        self.stop()
        raise ComfyUITimeout(
            f"ComfyUI did not answer at {self.url} within {timeout:g}s; stopped it.\n"
            f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}", url=self.url,
            hint="Check the URL matches --listen/--port in COMFY_GEN_COMFYUI_ARGS, or raise --timeout.")

    def stop(self, *, timeout: float = 30.0) -> bool:
        """Terminate the server's process group, kill it after ``timeout``; True if it was running."""
        pid = self._read_pid()
        if pid is None or not _pid_alive(pid) or not _is_comfyui(pid):
            self._forget(pid)
            return False
        procs.terminate_group(pid)  # we started it as a group leader: its group id is its pid
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            log.warning("ComfyUI (pid %d) did not stop within %gs; killing it", pid, timeout)
            procs.kill_group(pid)
            kill_deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        self._forget(pid)
        return True

    def restart(self, *, timeout: float = 120.0) -> ServerStatus:
        self._command()  # fail on bad settings before stopping anything
        self.stop()
        return self.start(timeout=timeout)

    def _forget(self, pid: int | None) -> None:
        if pid is not None:
            proc = _children.pop(pid, None)
            if proc is not None:
                try:
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
        if self._read_pid() == pid or pid is None:
            self.pid_path.unlink(missing_ok=True)
