"""A local stack: Prefect server, work pool, deployments, worker, and the emulator.

``comfy-gen up`` runs it in the foreground, ``comfy-gen run`` starts its server;
the deployment tests use the same functions, so what the tests start is what
users start.

Every process runs under the ``procs`` watchdog in its own process group: it
ends with its group when we stop it, and also when we die (even by SIGKILL).
Each one is recorded in ``<PREFECT_HOME>/comfy-gen-procs/<pid>.json`` with the
pid of the comfy-gen process that owns it; a later stack ends whatever is still
recorded there for an owner that is gone (the watchdog itself was killed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping

import httpx

from comfy_gen import procs as _procs
from comfy_gen.config import PROJECT_ROOT
from comfy_gen.errors import ConfigError
from comfy_gen.urls import redact_text, redact_url

log = logging.getLogger(__name__)

WORK_POOL = "comfy-gen"
#: Folder under PREFECT_HOME recording the processes a stack started.
RECORDS = "comfy-gen-procs"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_bin() -> str:
    """The ``prefect`` executable next to this interpreter (the project's venv)."""
    candidate = Path(sys.executable).with_name("prefect")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("prefect")
    if not found:
        raise ConfigError("The `prefect` command was not found; install comfy-gen's dependencies.")
    return found


def prefect_env(base: Mapping[str, str], *, home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for Prefect processes of this stack."""
    env = dict(base)
    env["PREFECT_HOME"] = str(home)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # 5x less server CPU per recorded task run (measured; see shared notes).
    env.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "100")
    # A server restart must not leak concurrency slots forever.
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
                   "prefect.server.concurrency.lease_storage.filesystem")
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def prefect_database_url(url: str, setting: str = "--database-url") -> str:
    """The SQLAlchemy URL Prefect's server takes for PostgreSQL (``postgresql+asyncpg://``,
    the driver Prefect ships with) from any PostgreSQL URL spelling; ConfigError naming
    ``setting`` for anything else (SQLite is Prefect's default: leave the option out)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{setting} must be a PostgreSQL URL, got {redact_url(url)!r}",
                          hint="e.g. postgresql://user:password@host:5432/prefect (leave it out for SQLite)")
    return "postgresql+asyncpg://" + rest


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (the bind test Prefect itself makes)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def end_leftovers(home: Path) -> list[int]:
    """End processes recorded under ``home`` whose owner is gone; returns their pids."""
    ended: list[int] = []
    for record in sorted((home / RECORDS).glob("*.json")):
        try:
            data = json.loads(record.read_text())
            pid, owner = int(data["pid"]), int(data["owner"])
        except (OSError, ValueError, KeyError, TypeError):
            record.unlink(missing_ok=True)
            continue
        if _procs.pid_alive(owner):
            continue  # another comfy-gen process still runs it
        if _procs.group_alive(pid) and _is_ours(pid, [str(a) for a in data.get("command", [])]):
            log.warning("Ending %s (pid %d) left over by comfy-gen process %d", data.get("name"), pid, owner)
            _procs.terminate_group(pid)
            deadline = time.monotonic() + 10
            while _procs.group_alive(pid) and time.monotonic() < deadline:
                time.sleep(_procs.POLL_SECONDS)
            _procs.kill_group(pid)
            ended.append(pid)
        record.unlink(missing_ok=True)
    return ended


def _is_ours(pgid: int, command: list[str]) -> bool:
    """Whether the group still runs what we recorded (a recycled pid is left alone)."""
    members = _procs.group_members(pgid)
    if members is None:
        return True  # no way to tell here; the owner is gone and the group was ours
    lines = [_procs.command_line(pid) or "" for pid in members]
    return any("comfy_gen.procs" in line or (command and command[0] in line) for line in lines)


@dataclass
class Stack:
    """Processes started for a local stack; ``stop()`` ends them all."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 4200
    #: PostgreSQL for the Prefect server (any PostgreSQL URL spelling); None = SQLite in ``home``.
    database_url: str | None = field(default=None, repr=False)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    _log_files: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def worker_name(self) -> str:
        return f"comfy-gen-{os.getpid()}-{self.port}"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        return prefect_env(base if base is not None else os.environ, home=self.home, api_url=self.api_url)

    def _spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        self.home.mkdir(parents=True, exist_ok=True)
        log_path = self.home / f"{name}.log"
        fh = open(log_path, "ab")
        self._log_files.append(fh)
        proc = _procs.spawn_group(_procs.watched(args), stdout=fh, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, cwd=str(cwd or PROJECT_ROOT))
        self.procs.append(proc)
        self.logs.append(log_path)
        records = self.home / RECORDS
        records.mkdir(exist_ok=True)
        (records / f"{proc.pid}.json").write_text(json.dumps(
            {"pid": proc.pid, "name": name, "owner": os.getpid(), "port": self.port, "command": args}))
        return proc

    def check_port(self) -> None:
        """End our own leftovers on this home, then raise ConfigError if the port
        is still taken: we never attach to a server we did not start."""
        end_leftovers(self.home)
        if port_in_use(self.host, self.port):
            raise ConfigError(f"Port {self.port} on {self.host} is already in use by another program; "
                              "comfy-gen will not attach to a server it did not start.",
                              hint=f"Stop that program, or choose a free port with --port (e.g. --port {free_port()}).")

    def start_server(self, *, ui: bool = False, timeout: float = 120.0) -> None:
        """Start ``prefect server start`` and wait until it is healthy.

        Raises ConfigError when the port is taken (we never attach to a server
        we did not start) or the server exits or stays unhealthy.
        """
        self.check_port()
        env = self.env()
        env.pop("PREFECT_API_URL", None)
        # The UI calls the API at 127.0.0.1:4200 unless told otherwise: on any other
        # port its pages would load and then fail with "Can't connect to Server API".
        env["PREFECT_SERVER_UI_API_URL"] = self.api_url
        if self.database_url:
            # Several workers' flow runs write at once: SQLite answers "database is locked",
            # PostgreSQL does not (Prefect's documented choice for this). Only the server needs it.
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_database_url(self.database_url)
        args = [prefect_bin(), "server", "start", "--host", self.host, "--port", str(self.port)]
        proc = self._spawn("server", args + ([] if ui else ["--no-ui"]), env)
        self._wait_for(lambda: self._get("/health").status_code == 200, proc, "prefect server", timeout)

    def prefect(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a ``prefect`` CLI command against this stack's server."""
        result = subprocess.run([prefect_bin(), "--no-prompt", *args], env=self.env(), cwd=str(PROJECT_ROOT),
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ConfigError(f"`prefect {' '.join(args)}` failed ({result.returncode}):\n"
                              f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def create_pool(self) -> None:
        result = self.prefect("work-pool", "create", WORK_POOL, "--type", "process", check=False)
        if result.returncode != 0 and "already exists" not in (result.stdout + result.stderr):
            raise ConfigError(f"Could not create work pool {WORK_POOL}: {result.stdout}{result.stderr}")

    def deploy(self) -> None:
        self.prefect("deploy", "--all")

    def start_worker(self, extra_env: Mapping[str, str] | None = None, *, timeout: float = 120.0) -> None:
        """Start a process worker on the pool and wait until the server lists it."""
        self.start_workers(1, extra_env, timeout=timeout)

    def start_workers(self, count: int, extra_env: Mapping[str, str] | None = None, *,
                      limit: int | None = None, timeout: float = 120.0) -> list[str]:
        """Start ``count`` process workers on the one pool (all at once) and wait until the
        server lists each; their names. ``limit``: flow runs each worker runs at once
        (``prefect worker start --limit``), so concurrent runs spread over the workers."""
        env = self.env()
        env.update(extra_env or {})
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        for index in range(1, count + 1):
            name = self.worker_name if index == 1 else f"{self.worker_name}-{index}"
            args = [prefect_bin(), "worker", "start", "--pool", WORK_POOL, "--name", name]
            if limit is not None:
                args += ["--limit", str(limit)]
            started.append((name, self._spawn("worker" if index == 1 else f"worker-{index}", args, env)))

        def registered(name: str) -> bool:
            response = self._get(f"/work_pools/{WORK_POOL}/workers/filter", method="POST", json={})
            return response.status_code == 200 and any(w.get("name") == name for w in response.json())

        for name, proc in started:
            self._wait_for(lambda n=name: registered(n), proc, f"prefect worker {name}", timeout)
        return [name for name, _ in started]

    def start_web(self, port: int, extra_env: Mapping[str, str] | None = None, *, timeout: float = 120.0) -> str:
        """Start the HTTP API and web page (``comfy-gen serve``) on loopback; its URL once
        ``/health`` answers. The worker gets it as ``COMFY_GEN_PUBLIC_URL`` so run
        artifacts link to pictures a browser can open (no S3 needed)."""
        if port_in_use(self.host, port):
            raise ConfigError(f"Port {port} on {self.host} is already in use by another program.",
                              hint=f"Choose a free port with --web-port (e.g. --web-port {free_port()}).")
        env = self.env()
        env.update(extra_env or {})
        url = f"http://{self.host}:{port}"
        proc = self._spawn("web", [sys.executable, "-m", "comfy_gen.cli", "serve", "--host", self.host,
                                   "--port", str(port)], env)
        self._wait_for(lambda: httpx.get(url + "/health", timeout=5).status_code == 200, proc, "web app", timeout)
        return url

    def _get(self, path: str, *, method: str = "GET", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.api_url + path, timeout=5, **kwargs)

    def _wait_for(self, ready: Any, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
        log_path = self.logs[self.procs.index(proc)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                # The tail may quote a database URL: credentials are masked.
                raise ConfigError(f"{what} exited during start-up (code {proc.returncode}); log: {log_path}\n"
                                  f"{redact_text(_tail(log_path))}")
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise ConfigError(f"{what} was not ready within {timeout:.0f} s; log: {log_path}")

    def stop(self, *, timeout: float = 15.0) -> list[int]:
        """End every process group started here, all at once, within ``timeout``
        (then killed); returns the pids that had to be killed."""
        killed = _procs.stop_groups(self.procs, timeout=timeout)
        for proc in self.procs:
            (self.home / RECORDS / f"{proc.pid}.json").unlink(missing_ok=True)
        for fh in self._log_files:
            fh.close()
        self.procs.clear()
        self._log_files.clear()
        return killed


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
