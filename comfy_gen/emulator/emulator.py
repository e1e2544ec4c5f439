"""``Emulator``: a ComfyUI-protocol server on its own event loop thread.

Usage::

    with Emulator(step_time=0.01, model_switch_time=0.5) as emu:
        httpx.get(emu.url + "/system_stats")
        emu.faults.error_node_class = "VAEDecode"
        emu.hold(after=2)          # the 3rd job to reach a sampler waits there
        [prompt_id] = emu.wait_held(1)
        emu.release()              # it goes on; nothing is held any more
        emu.restart()
        emu.stats()["jobs_completed"]
        emu.stats()["model_switches"]   # jobs that (re)loaded their checkpoint/LoRAs
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from aiohttp import web

from comfy_gen.emulator.catalog import normalize_models
from comfy_gen.emulator.core import Core, wipe_temp
from comfy_gen.emulator.faults import Faults
from comfy_gen.emulator.files import Dirs
from comfy_gen.emulator.render import Picture, png_bytes, render
from comfy_gen.emulator.server import build_app, stats_of

T = TypeVar("T")


class Emulator:
    """A running emulated ComfyUI server (HTTP + WebSocket on ``host:port``).

    ``port=0`` picks a free port. ``data_dir`` holds ``output/``, ``input/`` and
    ``temp/``; without it a temporary folder is used and removed on ``stop()``.
    ``models`` overrides model lists per folder (``{"checkpoints": [...]}``).
    ``previews=True`` sends binary preview frames, like ``--preview-method auto``.
    ``custom_nodes=False`` serves only ComfyUI's own classes (a server without the
    segment-anything and VideoHelperSuite packs).
    ``model_switch_time``: seconds a job spends loading when its checkpoint or LoRA
    set differs from the previous job's (a real server reloads weights); 0 by default.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, step_time: float = 0.02,
                 data_dir: str | Path | None = None, models: dict[str, list[str]] | None = None,
                 previews: bool = False, custom_nodes: bool = True,
                 model_switch_time: float = 0.0) -> None:
        self.host = host
        self.custom_nodes = custom_nodes
        self._requested_port = port
        self.step_time = step_time
        self.model_switch_time = model_switch_time
        self.previews = previews
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="comfy-emu-"))
        self.dirs = Dirs(self.data_dir / "output", self.data_dir / "input", self.data_dir / "temp")
        self.models = normalize_models(models)
        self.faults = Faults()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._core: Core | None = None

    # --- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Emulator":
        """Start listening (returns once the port is bound)."""
        if self.running:
            return self
        self._prepare_dirs()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="comfy-emulator", daemon=True)
        self._thread.start()
        try:
            self._call(self._astart())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Drop every socket (no close frame, like a killed server) and shut down."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                self._call(self._astop(), timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                loop.close()
        self._loop = self._thread = None
        self._runner = self._core = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- controls ----------------------------------------------------------

    def restart(self) -> None:
        """Lose queue, running job and history; cut sockets; wipe temp; keep outputs."""
        self._call(self._need_core().restart())

    def stats(self) -> dict[str, Any]:
        """Jobs run, busy intervals ``[[start, end], ...]`` (time.monotonic), queue sizes,
        ``model_switches`` (jobs that loaded other models than the job before them)."""
        async def snapshot() -> dict[str, Any]:
            return stats_of(self._need_core())
        return self._call(snapshot())

    def clear(self) -> None:
        """Reset faults, stop holding, interrupt the running job, drop pending ones (test hygiene)."""
        async def clear() -> None:
            core = self._need_core()
            core.faults.reset()
            await core.clear_pending()
            core.interrupt(None)  # a held job wakes and is interrupted at its sampler
            core.holds.release()
        self._call(clear())

    def hold(self, after: int = 0, at_step: int = 1) -> None:
        """Hold jobs at their first sampler step until released; the next ``after`` run through.

        Only jobs that reach a sampler are counted or held (a fully cached job is not).
        A held job still honours ``/interrupt``; ``clear()``, ``restart()`` and ``stop()``
        never leave one hanging. ``at_step`` > 1 holds mid-sampling, after the progress
        of the steps before it went out.
        """
        async def hold() -> None:
            self._need_core().holds.hold(after, at_step)
        self._call(hold())

    def held(self) -> list[str]:
        """Prompt ids held right now, longest-held first."""
        async def held() -> list[str]:
            return self._need_core().holds.held
        return self._call(held())

    def wait_held(self, n: int = 1, timeout: float = 60.0) -> list[str]:
        """Block until ``n`` jobs are held (one worker: at most one at a time); their ids.

        Raises TimeoutError (with the emulator's stats) after ``timeout`` seconds.
        """
        async def wait() -> tuple[bool, list[str]]:
            holds = self._need_core().holds
            return await holds.wait_held(n, timeout), holds.held
        reached, ids = self._call(wait(), timeout=timeout + 30)
        if not reached:
            raise TimeoutError(f"{len(ids)} of {n} job(s) held after {timeout:g}s; stats: {self.stats()}")
        return ids

    def release(self, n: int | None = None) -> list[str]:
        """Let the ``n`` longest-held jobs go on (hold stays on); None: all, and stop holding."""
        async def release() -> list[str]:
            return self._need_core().holds.release(n)
        return self._call(release())

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.stats()
            if data["queue_pending"] == 0 and data["queue_running"] == 0:
                return True
            time.sleep(0.01)
        return False

    @property
    def output_dir(self) -> Path:
        return self.dirs.output

    @property
    def input_dir(self) -> Path:
        return self.dirs.input

    @property
    def temp_dir(self) -> Path:
        return self.dirs.temp

    # --- internals ---------------------------------------------------------

    def _prepare_dirs(self) -> None:
        for folder in (self.dirs.output, self.dirs.input):
            folder.mkdir(parents=True, exist_ok=True)
        wipe_temp(self.dirs.temp)
        example = self.dirs.input / "example.png"  # ComfyUI ships one (captures/009)
        if not example.exists():
            example.write_bytes(png_bytes(render(Picture(64, 64, 0, "example")), {}))

    def _need_core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._core

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the emulator is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _astart(self) -> None:
        self._core = Core(self.dirs, self.models, self.faults, step_time=self.step_time,
                          previews=self.previews, custom_nodes=self.custom_nodes,
                          model_switch_time=self.model_switch_time)
        self._runner = web.AppRunner(build_app(self._core), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port
        self._core.start_worker()

    async def _astop(self) -> None:
        if self._core is not None:
            self._core.hub.drop_all()
            await self._core.stop_worker()
        if self._runner is not None:
            await self._runner.cleanup()
