"""Progress on the terminal for `run`, `demo` and `generate`, drawn with rich.

``RunProgress`` is the display's model: it observes a flow run through
``comfy_gen.observe`` (never by parsing logs) and answers ``snapshot()``:
items done of total, how many wait for the GPU / render / validate, the pass
rate so far and an ETA from measured job times. ``RunDisplay`` shows it: a
live two-line display when its stream is a terminal, else one plain line per
finished item (CI logs and pipes stay readable). It also quiets the console:
Prefect's per-item log lines (task runs, and comfy_gen records logged inside
them) are shown only with ``-v``; they still go to the Prefect run log, since
only the console handler is filtered. ``SamplingBar`` is `generate`'s live line.

rich is imported only when a display starts, so `comfy-gen --help` stays light.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Callable

from comfy_gen.observe import ITEM_STATES, ItemState

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console, RenderableType
    from rich.live import Live

    from comfy_gen.results import ItemResult

#: How the states read on the display.
STATE_LABELS: dict[str, str] = {"rendering": "rendering", "waiting": "waiting for GPU",
                                "validating": "validating", "saving": "saving"}


@dataclass(frozen=True)
class Snapshot:
    """The display's model at one moment."""

    recipe: str | None
    total: int | None            # None until the flow has planned the run
    done: int
    states: dict[str, int]       # waiting / rendering / validating / saving -> items
    counts: dict[str, int]       # verdict -> finished items
    cached: int
    pass_rate: float | None      # passed / validated among rendered items, as the run summary
    eta_seconds: float | None    # None until a job time was measured
    elapsed: float

    @property
    def failed(self) -> int:
        return self.counts.get("error", 0)


@dataclass
class RunProgress:
    """Counts and timings of the run being observed (thread-safe; a RunObserver).

    ETA: the slower of two measures, so neither the GPU nor the validation
    behind it is forgotten: outstanding items x the moving average of measured
    job times (time holding the GPU gate) / jobs seen on the GPU at once, and,
    once two rendered items finished, outstanding items / their recent finish rate.
    """

    clock: Callable[[], float] = time.monotonic
    window: int = 20
    recipe: str | None = None
    total: int | None = None
    results: list["ItemResult"] = field(default_factory=list)
    _states: dict[str, ItemState] = field(default_factory=dict)
    _entered: dict[str, float] = field(default_factory=dict)
    _job_times: collections.deque[float] = field(default_factory=collections.deque)
    _finishes: collections.deque[float] = field(default_factory=collections.deque)
    _parallel: int = 0
    _started: float = 0.0
    _ended: float | None = None     # when the last item finished: the clock stops there
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._job_times = collections.deque(maxlen=self.window)
        self._finishes = collections.deque(maxlen=self.window)

    # -- RunObserver -----------------------------------------------------------
    def run_started(self, run_id: str, recipe: str, total: int) -> None:
        with self._lock:
            self.recipe, self.total = recipe, total
            self.results.clear()
            self._states.clear()
            self._entered.clear()
            self._job_times.clear()
            self._finishes.clear()
            self._parallel = 0
            self._started, self._ended = self.clock(), None

    def item_state(self, item_id: str, state: ItemState) -> None:
        with self._lock:
            self._leave_gpu(item_id)
            self._states[item_id] = state
            if state == "rendering":
                self._entered[item_id] = self.clock()
                self._parallel = max(self._parallel, sum(1 for s in self._states.values() if s == "rendering"))

    def item_finished(self, result: "ItemResult") -> None:
        with self._lock:
            self._leave_gpu(result.item_id)
            self._states.pop(result.item_id, None)
            self.results.append(result)
            if result.source == "rendered":
                self._finishes.append(self.clock())
            if self.total is not None and len(self.results) >= self.total:
                self._ended = self.clock()

    def _leave_gpu(self, item_id: str) -> None:
        entered = self._entered.pop(item_id, None)
        if entered is not None:
            self._job_times.append(self.clock() - entered)

    # -- the model -------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            states: dict[str, int] = {s: 0 for s in ITEM_STATES}
            for state in self._states.values():
                states[state] += 1
            counts: dict[str, int] = {}
            for r in self.results:
                counts[r.verdict] = counts.get(r.verdict, 0) + 1
            validated = [r for r in self.results if r.source == "rendered" and r.verdict in ("passed", "best_effort")]
            passed = sum(1 for r in validated if r.verdict == "passed")
            return Snapshot(
                recipe=self.recipe, total=self.total, done=len(self.results), states=states, counts=counts,
                cached=sum(1 for r in self.results if r.cached),
                pass_rate=passed / len(validated) if validated else None,
                eta_seconds=self._eta(), elapsed=(self._ended or self.clock()) - self._started)

    def _eta(self) -> float | None:
        if self.total is None:
            return None
        outstanding = self.total - len(self.results)
        if outstanding <= 0:
            return 0.0
        estimates = []
        if self._job_times:
            average = sum(self._job_times) / len(self._job_times)
            estimates.append(outstanding * average / max(1, self._parallel))
        if len(self._finishes) >= 2 and self._finishes[-1] > self._finishes[0]:
            rate = (len(self._finishes) - 1) / (self._finishes[-1] - self._finishes[0])
            estimates.append(outstanding / rate)
        return max(estimates) if estimates else None


def duration(seconds: float) -> str:
    """``42s``, ``3:07``, ``1:02:03``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_line(snap: Snapshot) -> str:
    """The second line of the live display: states, pass rate, ETA."""
    parts = [f"{STATE_LABELS[s]} {snap.states[s]}" for s in ("rendering", "waiting", "validating")]
    if snap.states["saving"]:
        parts.append(f"saving {snap.states['saving']}")
    if snap.cached:
        parts.append(f"stored earlier {snap.cached}")
    if snap.failed:
        parts.append(f"failed {snap.failed}")
    parts.append(f"pass rate {100 * snap.pass_rate:.1f} %" if snap.pass_rate is not None else "pass rate -")
    if snap.total is not None and snap.done < snap.total:
        parts.append(f"ETA {duration(snap.eta_seconds)}" if snap.eta_seconds is not None else "ETA -")
    parts.append(f"elapsed {duration(snap.elapsed)}")
    return " · ".join(parts)


def item_line(snap: Snapshot, result: "ItemResult") -> str:
    """The plain line for one finished item: ``[3/6] item-0002-55e850253ac3 [prompt=lake] Passed: CLIP 27.1``."""
    label = " ".join(f"{k}={v}" for k, v in result.labels.items())
    name = f"item-{result.index:04d}-{result.item_id[:12]}" + (f" [{label}]" if label else "")
    line = f"[{snap.done}/{snap.total}] {name} {result.headline()}"
    if result.elapsed_seconds:
        line += f" ({result.elapsed_seconds:.1f} s)"
    if snap.total is not None and snap.done < snap.total and snap.eta_seconds is not None:
        line += f"; ETA {duration(snap.eta_seconds)}"
    return line


class ConsoleLogFilter(logging.Filter):
    """On Prefect's console handler: per-item records (logged inside a task run)
    only when ``verbose``. With a ``sink`` (a live display), kept records are
    handed to it instead, so they print above the display instead of through it."""

    def __init__(self, *, verbose: bool, sink: Callable[[logging.LogRecord], None] | None = None) -> None:
        super().__init__()
        self.verbose = verbose
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.verbose and _per_item(record):
            return False
        if self.sink is not None:
            self.sink(record)
            return False
        return True


def _per_item(record: logging.LogRecord) -> bool:
    # Prefect's task-run logger tags its records; library records logged on an
    # item's thread are told by the task-run context they were emitted in.
    if getattr(record, "task_run_id", None) is not None:
        return True
    from prefect.context import TaskRunContext

    return TaskRunContext.get() is not None


class RunDisplay:
    """Shows a flow run's progress on ``stream`` while the block runs (a RunObserver).

    Live when ``stream`` is a terminal, else one line per finished item.
    ``attach_logging()`` filters Prefect's console handler; call it once
    Prefect has configured logging (the flow module is imported).
    """

    def __init__(self, stream: IO[str], *, verbose: bool = False, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.verbose = verbose
        self.live = stream.isatty() if live is None else live
        self.model = RunProgress(clock=clock)
        self._console: "Console | None" = None
        self._live: "Live | None" = None
        self._filters: list[tuple[logging.Handler, ConsoleLogFilter]] = []
        self._observing: Any = None

    # -- lifetime --------------------------------------------------------------
    def __enter__(self) -> "RunDisplay":
        from comfy_gen.observe import observing

        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream)
            # Prints on a std stream show above the display, but only a stream on the
            # terminal is taken over: a redirected one (`2>log`, `--json | jq`) keeps its output.
            self._live = Live(console=self._console, get_renderable=self.render, refresh_per_second=4,
                              redirect_stdout=_on_terminal(sys.stdout), redirect_stderr=_on_terminal(sys.stderr))
            self._live.start()
        self._observing = observing(self)
        self._observing.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._observing.__exit__(*exc)
        finally:
            for handler, log_filter in self._filters:
                handler.removeFilter(log_filter)
            self._filters.clear()
            if self._live is not None:
                self._live.refresh()
                self._live.stop()

    def attach_logging(self) -> None:
        """Filter the console handlers Prefect put on the root logger (not its API handler)."""
        from prefect.logging.handlers import PrefectConsoleHandler

        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(h is handler for h, _ in self._filters):
                # Records bound for the terminal print above the live display, not through it.
                drawn_over = self._live is not None and _on_terminal(getattr(handler, "stream", None))
                log_filter = ConsoleLogFilter(verbose=self.verbose, sink=self._print_record if drawn_over else None)
                handler.addFilter(log_filter)
                self._filters.append((handler, log_filter))

    # -- RunObserver -----------------------------------------------------------
    def run_started(self, run_id: str, recipe: str, total: int) -> None:
        self.model.run_started(run_id, recipe, total)

    def item_state(self, item_id: str, state: ItemState) -> None:
        self.model.item_state(item_id, state)

    def item_finished(self, result: "ItemResult") -> None:
        self.model.item_finished(result)
        if self._live is None:
            # Written whole with its newline, so lines from item threads never interleave.
            self.stream.write(item_line(self.model.snapshot(), result) + "\n")
            self.stream.flush()

    # -- drawing ---------------------------------------------------------------
    def render(self) -> "RenderableType":
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        snap = self.model.snapshot()
        if snap.total is None:
            return Text(f"Starting the run (Prefect, preflight) ... {duration(snap.elapsed)}")
        head = Table.grid(padding=(0, 1))
        head.add_row(Text(f"{snap.recipe}", style="bold"), ProgressBar(total=max(1, snap.total), completed=snap.done,
                                                                       width=40),
                     Text(f"{snap.done}/{snap.total} items"))
        return Group(head, Text(status_line(snap)))

    def _print_record(self, record: logging.LogRecord) -> None:
        handler = next((h for h, _ in self._filters), None)
        message = handler.format(record) if handler is not None else record.getMessage()
        if self._console is not None:
            self._console.print(message, markup=False, highlight=False, soft_wrap=True)


def _on_terminal(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):   # closed or not a real file
        return False


class SamplingBar:
    """`generate`'s live line on a terminal: state, sampling steps, ComfyUI's ETA.
    Messages print above it (``line``)."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        self.console = Console(file=stream)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[eta]}"), console=self.console,
                                 redirect_stdout=_on_terminal(sys.stdout), redirect_stderr=_on_terminal(sys.stderr))
        self.task = self.progress.add_task("Queued", total=None, eta="")
        self.progress.start()

    # Each event is drawn at once (refresh=True), not only on the next timer tick:
    # a fast job's steps and states are all seen, in order.
    def state(self, description: str) -> None:
        self.progress.update(self.task, description=description, eta="", refresh=True)

    def step(self, step: int, total: int, eta_seconds: float | None) -> None:
        eta = f"ETA {duration(eta_seconds)}" if eta_seconds is not None else ""
        self.progress.update(self.task, description="Sampling", total=total, completed=step, eta=eta, refresh=True)

    def restart(self, description: str) -> None:
        self.progress.reset(self.task, description=description, total=None, eta="")
        self.progress.refresh()

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False)

    def close(self, *, done: bool = False) -> None:
        if done:
            self.progress.update(self.task, description="Done", eta="")
        self.progress.stop()


__all__ = ["ConsoleLogFilter", "RunDisplay", "RunProgress", "SamplingBar", "Snapshot", "duration", "item_line",
           "status_line"]
