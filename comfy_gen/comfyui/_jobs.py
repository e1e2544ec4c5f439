"""Waiting for jobs: WebSocket events first, /history (or /api/jobs) polling as the net.

Completion is ``executing {node: null, prompt_id}``: ComfyUI sends it after the
history entry is stored (main.py prompt_worker: ``task_done`` then
``send_sync("executing", {"node": None, ...})``), whereas ``execution_success``
comes before the history write. While the socket is down (or the prompt was
queued by someone else) the tracker polls every ``poll_interval``; a job found in
neither queue nor history twice in a row is lost (the server restarted).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from comfy_gen.comfyui import _protocol
from comfy_gen.comfyui import events as ev
from comfy_gen.comfyui._types import JobResult
from comfy_gen.comfyui._ws import EventListener, ws_url
from comfy_gen.errors import (ComfyUITimeout, ComfyUIUnavailable, ExecutionFailed,
                              ExecutionInterrupted, JobLost)

if TYPE_CHECKING:
    from comfy_gen.comfyui._client import ComfyUIClient

log = logging.getLogger(__name__)

#: While the socket is healthy, still look at the job this often (s): a safety
#: net against a silently stalled connection.
SAFETY_POLL = 15.0
#: Buffers kept for prompts we queued but nobody waited for (bounded memory).
MAX_UNCLAIMED = 256
#: How long (s) a wait tolerates an unreachable server (a restart takes 8-16 s).
OUTAGE_GRACE = 60.0


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: Queue markers. RECONNECTED: the socket (re)connected or dropped, events may
#: have been missed. QUEUE_CHANGED: a ``status`` broadcast; the server sends one
#: on every queue change, including another client deleting our pending job.
RECONNECTED = _Marker("reconnected")
QUEUE_CHANGED = _Marker("queue changed")


class _Waiter:
    def __init__(self, prompt_id: str, ours: bool) -> None:
        self.prompt_id = prompt_id
        self.ours = ours  # queued with our client_id, so its events reach our socket
        self.items: queue.Queue[Any] = queue.Queue()
        self.claimed = False
        self.started = False  # an event of this prompt arrived: it left the pending list


class JobTracker:
    """Owns the listener and routes events to per-prompt waiters (thread-safe)."""

    def __init__(self, client: "ComfyUIClient") -> None:
        self._client = client
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._unclaimed: collections.OrderedDict[str, _Waiter] = collections.OrderedDict()
        self._listener: EventListener | None = None
        self._first_connect = threading.Event()  # set once the first connect attempt ended
        self._clock = _protocol.ProgressClock()
        self._running: str | None = None  # our prompt the server is executing
        self._jobs_api: bool | None = None

    # --- listener ---

    def listener(self) -> EventListener:
        with self._lock:
            if self._listener is None:
                self._listener = EventListener(
                    ws_url(self._client.base_url, self._client.client_id),  # connects: the real URL
                    on_event=self._on_event, on_connection=self._on_connection,
                    open_timeout=self._client.connect_timeout,
                    max_backoff=max(0.2, min(2.0, self._client.poll_interval)))
                self._first_connect = threading.Event()
                first = True
            else:
                first = False
            listener, ready = self._listener, self._first_connect
        # The first start waits for the socket so the first prompt's events arrive;
        # callers racing it (8 threads, one client) wait for that same attempt, else
        # their prompts could run before the socket exists and cost a poll interval.
        if first:
            listener.start(wait=self._client.connect_timeout)
            ready.set()
        else:
            listener.start()
            ready.wait(self._client.connect_timeout)
        return listener

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _on_connection(self, connected: bool) -> None:
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
        for waiter in waiters:
            waiter.items.put(RECONNECTED)

    def _on_event(self, event: ev.Event) -> None:
        event = self._clock.note(event, time.monotonic())
        if isinstance(event, ev.Status):
            with self._lock:
                pending = [w for ws in self._waiters.values() for w in ws if not w.started]
            for waiter in pending:
                waiter.items.put(QUEUE_CHANGED)
            return
        with self._lock:
            if isinstance(event, ev.ExecutionStart):
                self._running = event.prompt_id
            # Legacy previews and the replayed `executing` after a reconnect carry
            # no prompt_id: they belong to the prompt that is running.
            if event.prompt_id is None and self._running is not None:
                event = dataclasses.replace(event, prompt_id=self._running)
            if isinstance(event, ev.Executing) and event.is_done and event.prompt_id == self._running:
                self._running = None
            waiters = list(self._waiters.get(event.prompt_id or "", ()))
        for waiter in waiters:
            if not isinstance(event, ev.Preview):
                waiter.started = True
            waiter.items.put(event)

    # --- registration ---

    def expect(self, prompt_id: str) -> None:
        """Called before POST /prompt: start listening and buffer this prompt's events."""
        self.listener()
        with self._lock:
            if prompt_id in self._unclaimed:
                return
            waiter = _Waiter(prompt_id, ours=True)
            self._waiters.setdefault(prompt_id, []).append(waiter)
            self._unclaimed[prompt_id] = waiter
            while len(self._unclaimed) > MAX_UNCLAIMED:
                old_id, old = self._unclaimed.popitem(last=False)
                self._drop(old_id, old)

    def forget(self, prompt_id: str) -> None:
        with self._lock:
            waiter = self._unclaimed.pop(prompt_id, None)
            if waiter is not None:
                self._drop(prompt_id, waiter)

    def _drop(self, prompt_id: str, waiter: _Waiter) -> None:
        waiters = self._waiters.get(prompt_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(prompt_id, None)

    def _claim(self, prompt_id: str) -> _Waiter:
        with self._lock:
            waiter = self._unclaimed.pop(prompt_id, None)
            if waiter is None:
                # Not queued through this client: its events go to another socket.
                waiter = _Waiter(prompt_id, ours=False)
                self._waiters.setdefault(prompt_id, []).append(waiter)
            waiter.claimed = True
            return waiter

    # --- waiting ---

    def wait(self, prompt_id: str, *, timeout: float,
             on_event: Callable[[ev.Event], None] | None) -> JobResult:
        waiter = self._claim(prompt_id)
        started = time.monotonic()
        deadline = started + timeout
        listener = self.listener() if waiter.ours else None
        last_check = started if waiter.ours else float("-inf")
        nudged = False  # a marker asked for an early look (at most one per poll_interval)
        down_since: float | None = None
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise ComfyUITimeout(f"Job {prompt_id} did not finish within {timeout:g}s",
                                         url=self._client.display_url, prompt_id=prompt_id)
                healthy = listener is not None and listener.connected
                interval = SAFETY_POLL if healthy and not nudged else self._client.poll_interval
                next_check = last_check + interval
                if now < next_check:
                    try:
                        item: Any = waiter.items.get(timeout=min(deadline, next_check) - now)
                    except queue.Empty:
                        continue  # loop top: time to check, or past the deadline
                    if isinstance(item, ev.Event):
                        if on_event is not None:
                            on_event(item)
                        if isinstance(item, ev.Executing) and item.is_done:
                            entry = self._settled_entry(prompt_id)
                            if entry is not None:
                                return self._finish(prompt_id, entry, started)
                    elif item is RECONNECTED or (item is QUEUE_CHANGED and not waiter.started):
                        nudged = True
                    continue
                # A reconnect, or time for a poll: where is the job now?
                check_started = time.monotonic()
                try:
                    # No per-request retries: this loop is the retry, bounded by
                    # OUTAGE_GRACE, and nested retries would print a warning each.
                    entry = self._check(prompt_id, retry=False)
                    down_since = None
                except (ComfyUIUnavailable, ComfyUITimeout) as exc:
                    # The server may be restarting; JobLost is decided once it answers.
                    if down_since is None:
                        down_since = check_started
                        log.warning("Lost contact with ComfyUI at %s while waiting for job %s; "
                                    "waiting up to %gs for it to come back", self._client.display_url,
                                    prompt_id, OUTAGE_GRACE)
                    gone = time.monotonic() - down_since
                    if gone > OUTAGE_GRACE:
                        raise ComfyUIUnavailable(
                            f"Lost contact with ComfyUI at {self._client.display_url} while waiting for "
                            f"job {prompt_id}: unreachable for {gone:.0f}s ({exc.message})",
                            url=self._client.display_url, prompt_id=prompt_id,
                            hint="When the server is back, `comfy-gen queue` shows whether the job "
                                 "is still there; run the command again to render it.") from exc
                    log.info("job %s: server unreachable (%s); still waiting", prompt_id, exc.message)
                    entry = None
                last_check = time.monotonic()
                nudged = False
                if entry is not None:
                    return self._finish(prompt_id, entry, started)
        finally:
            with self._lock:
                self._drop(prompt_id, waiter)

    def _settled_entry(self, prompt_id: str) -> dict[str, Any] | None:
        """History right after completion; retried briefly in case it lags."""
        for _ in range(3):
            entry = self._client.history(prompt_id)
            if entry is not None:
                return entry
            time.sleep(min(0.2, self._client.poll_interval))
        return None

    def _check(self, prompt_id: str, *, retry: bool = True) -> dict[str, Any] | None:
        """History entry if finished; None if queued; JobLost if neither, twice."""
        for attempt in range(2):
            if attempt:
                # Look again a moment later: a job moving pending -> running -> done
                # between our two requests must not be declared lost.
                time.sleep(min(0.25, self._client.poll_interval))
            state = self._jobs_api_state(prompt_id, retry=retry)
            if state in ("pending", "running"):
                return None
            entry = self._client.history(prompt_id, retry=retry)
            if entry is not None:
                return entry
            if self._client.get_queue(retry=retry).find(prompt_id) is not None:
                return None
            entry = self._client.history(prompt_id, retry=retry)
            if entry is not None:
                return entry
        raise JobLost(f"Job {prompt_id} is in neither the queue nor the history of "
                      f"{self._client.display_url} (the server restarted?)",
                      url=self._client.display_url, prompt_id=prompt_id,
                      hint="Queue the job again.")

    def _jobs_api_state(self, prompt_id: str, *, retry: bool = True) -> str | None:
        """State from /api/jobs/{id} on servers that have it (probed once)."""
        if self._jobs_api is None:
            self._jobs_api = self._client.request("GET", "/api/jobs", retry=retry).status_code == 200
        if not self._jobs_api:
            return None
        response = self._client.request("GET", f"/api/jobs/{prompt_id}", retry=retry)
        if response.status_code != 200:
            return None
        try:
            return _protocol.jobs_api_state(response.json())
        except ValueError:
            return None

    def _finish(self, prompt_id: str, entry: dict[str, Any], started: float) -> JobResult:
        outcome, data = _protocol.history_outcome(entry)
        url = self._client.display_url
        if outcome == "interrupted":
            raise ExecutionInterrupted(f"Job {prompt_id} was interrupted"
                                       + (f" at node {data['node_id']} ({data.get('node_type')})"
                                          if data.get("node_id") else ""),
                                       url=url, prompt_id=prompt_id)
        if outcome == "error":
            node = f"node {data.get('node_id')} ({data.get('node_type')})" if data else "a node"
            raise ExecutionFailed(
                f"Job {prompt_id} failed on {node}: {data.get('exception_type', 'error')}: "
                f"{str(data.get('exception_message', '')).strip()}",
                prompt_id=prompt_id, node_id=_opt(data.get("node_id")),
                node_type=_opt(data.get("node_type")),
                exception_type=_opt(data.get("exception_type")),
                exception_message=_opt(data.get("exception_message")),
                traceback=[str(t) for t in data.get("traceback") or []], url=url)
        return JobResult(prompt_id=prompt_id, status="success",
                         outputs=_protocol.outputs_from_history(entry),
                         elapsed=_elapsed(entry, time.monotonic() - started),
                         cached=_protocol.is_cached(entry),
                         messages=_protocol.history_messages(entry))


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _elapsed(entry: dict[str, Any], fallback: float) -> float:
    """Server-side run time from the history timestamps (ms), else our wall time."""
    stamps = [m[1].get("timestamp") for m in _protocol.history_messages(entry)
              if len(m) >= 2 and isinstance(m[1], dict)]
    times: list[float] = [s for s in stamps if isinstance(s, (int, float))]
    if len(times) >= 2:
        return round((max(times) - min(times)) / 1000.0, 3)
    return round(fallback, 3)
