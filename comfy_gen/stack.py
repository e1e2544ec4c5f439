"""A local stack: Prefect server, work pool, deployments, worker, and the emulator.

``comfy-gen up`` runs it in the foreground; the deployment tests use the same
functions, so what the tests start is what users start.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import httpx

from comfy_gen.config import PROJECT_ROOT
from comfy_gen.errors import ConfigError

log = logging.getLogger(__name__)

WORK_POOL = "comfy-gen"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

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


@dataclass
class Stack:
    """Processes started for a local stack; ``stop()`` ends them all."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 4200
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        return prefect_env(base if base is not None else os.environ, home=self.home, api_url=self.api_url)

    def _spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        self.home.mkdir(parents=True, exist_ok=True)
        log_path = self.home / f"{name}.log"
        fh = open(log_path, "ab")
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=str(cwd or PROJECT_ROOT), start_new_session=True)
        self.procs.append(proc)
        self.logs.append(log_path)
        return proc

    def start_server(self, timeout: float = 120.0) -> None:
        env = self.env()
        env.pop("PREFECT_API_URL", None)
        proc = self._spawn("server", [prefect_bin(), "server", "start", "--host", self.host,
                                      "--port", str(self.port), "--no-ui"], env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ConfigError(f"prefect server exited early (code {proc.returncode}); "
                                  f"log: {self.home / 'server.log'}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise ConfigError(f"prefect server did not become healthy in {timeout:.0f} s")

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

    def start_worker(self, extra_env: Mapping[str, str] | None = None) -> None:
        env = self.env()
        env.update(extra_env or {})
        self._spawn("worker", [prefect_bin(), "worker", "start", "--pool", WORK_POOL], env)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()
