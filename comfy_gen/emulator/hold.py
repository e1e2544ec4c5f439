"""The hold switch: jobs stop at their sampler until a test releases them.

Tests that signal a process "mid-job" need a job that is observably running
and cannot finish before the signal lands, whatever the machine's load. Step
times cannot promise that; a held job can. A held job still honours
``/interrupt`` (it wakes and is interrupted at that step, as a real sampler
is), and a restart or stop loses it like any running job.

Everything here runs on the emulator's event loop thread.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Holds:
    """Which jobs are held at their sampler, and the switch that holds them.

    ``hold(after=K)`` lets the next K jobs that reach a sampler run through and
    holds every one after that. ``release(n)`` lets the n longest-held jobs go
    on with the switch left on; ``release()`` lets all go and turns it off.
    """

    def __init__(self) -> None:
        self.holding = False
        self.passes_left = 0
        self.at_step = 1   # held before this sampler step (1: before any progress)
        self.jobs_held = 0
        self._held: dict[str, asyncio.Event] = {}  # insertion order = the order they were held
        self._changed = asyncio.Event()  # set and replaced on every change of the held set

    @property
    def held(self) -> list[str]:
        return list(self._held)

    def to_dict(self) -> dict[str, Any]:
        return {"holding": self.holding, "passes_left": self.passes_left, "at_step": self.at_step,
                "held": self.held, "jobs_held": self.jobs_held}

    def hold(self, after: int = 0, at_step: int = 1) -> None:
        """Hold jobs before sampler step ``at_step`` (> 1: after that many steps' progress
        went out, for tests that must act on a job mid-sampling)."""
        if after < 0:
            raise ValueError("after must be >= 0")
        if at_step < 1:
            raise ValueError("at_step must be >= 1")
        self.holding, self.passes_left, self.at_step = True, after, at_step

    def release(self, n: int | None = None) -> list[str]:
        """Release the ``n`` longest-held jobs (all, and stop holding, when None)."""
        if n is not None and n < 0:
            raise ValueError("n must be >= 0")
        if n is None:
            self.holding, self.passes_left, self.at_step = False, 0, 1
        released = self.held if n is None else self.held[:n]
        for prompt_id in released:
            self._held.pop(prompt_id).set()
        self._notify()
        return released

    def wake(self, prompt_id: str) -> None:
        """An interrupt: the held job wakes (to be interrupted) and is no longer held, at once."""
        event = self._held.pop(prompt_id, None)
        if event is not None:
            event.set()
            self._notify()

    async def wait_held(self, n: int, timeout: float) -> bool:
        """True once at least ``n`` jobs are held; False after ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._held) < n:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    async def at_sampler(self, prompt_id: str) -> None:
        """Called once per job as it reaches sampler step ``at_step``; blocks while held."""
        if not self.holding:
            return
        if self.passes_left > 0:
            self.passes_left -= 1
            return
        event = asyncio.Event()
        self._held[prompt_id] = event
        self.jobs_held += 1
        self._notify()
        try:
            await event.wait()
        finally:
            # Released (already popped), interrupted, or cancelled by a restart/stop.
            if self._held.get(prompt_id) is event:
                del self._held[prompt_id]
                self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
