"""`comfy-gen run`, `comfy-gen demo` and `comfy-gen up`: recipes through Prefect."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from comfy_gen.config import get_settings, hub_offline_set, prefect_defaults, prefect_home, reset_settings_cache

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.cli.progress import RunDisplay

BANNER = "=" * 78


def _use_url(url: str | None) -> None:
    if url:
        os.environ["COMFY_GEN_COMFYUI_URL"] = url
        reset_settings_cache()


@contextlib.contextmanager
def backend_or_emulator(step_time: float = 0.05) -> Iterator[str | None]:
    """Yield the configured ComfyUI URL, or start the built-in emulator (loudly)."""
    settings = get_settings()
    if settings.comfyui_url_configured:
        yield settings.comfyui_url
        return
    from comfy_gen.emulator import Emulator

    emulator = Emulator(port=0, step_time=step_time,
                        data_dir=Path(settings.state_dir).resolve() / "emulator").start()
    click.secho(BANNER, fg="yellow", err=True)
    click.secho("  NO COMFYUI URL CONFIGURED (COMFY_GEN_COMFYUI_URL): USING THE BUILT-IN EMULATOR", fg="yellow",
                bold=True, err=True)
    click.secho(f"  at {emulator.url} - images are synthetic test patterns, not model output.", fg="yellow",
                err=True)
    click.secho("  Point COMFY_GEN_COMFYUI_URL at a real ComfyUI to render for real.", fg="yellow", err=True)
    click.secho(BANNER, fg="yellow", err=True)
    os.environ["COMFY_GEN_COMFYUI_URL"] = emulator.url
    reset_settings_cache()
    try:
        yield emulator.url
    finally:
        os.environ.pop("COMFY_GEN_COMFYUI_URL", None)
        reset_settings_cache()
        emulator.stop()


def _allow_recipe_folder(folder: Path) -> None:
    """A file named on the command line by the local user is allowed explicitly
    (the flow itself only reads recipes from the allowed folders)."""
    folders = [str(p) for p in get_settings().recipe_dirs] + [str(folder)]
    os.environ["COMFY_GEN_RECIPE_DIRS"] = os.pathsep.join(folders)
    reset_settings_cache()


def run_flow(recipe: str, *, force: bool = False, upload: bool | None = None, backend: str | None = None,
             max_items: int | None = None, items: str | None = None,
             display: "RunDisplay | None" = None) -> dict[str, Any]:
    """Run the render-recipe flow in this process (``display`` shows its progress).

    With PREFECT_API_URL set it reports to that server. Otherwise comfy-gen starts
    a local ``prefect server start`` for the run (history kept in PREFECT_HOME) in
    its own session, rather than Prefect's temporary server: a Ctrl-C in the
    terminal then reaches only this process, which cancels its outstanding jobs
    and still records the interrupted run, instead of the server dying with it.
    """
    settings = get_settings()
    for key, value in prefect_defaults(settings).items():
        os.environ.setdefault(key, value)
    home = prefect_home(settings)
    home.mkdir(parents=True, exist_ok=True)  # Prefect creates its home without parents
    with _local_prefect_server(home):
        from flows.render_recipe import render_recipe

        if display is not None:
            display.attach_logging()  # Prefect's console handler exists once the flow module is imported
        return render_recipe(recipe=recipe, force=force, upload=upload, backend=backend, max_items=max_items,
                             items=items)


@contextlib.contextmanager
def _local_prefect_server(home: Path) -> Iterator[None]:
    from comfy_gen.config import prefect_api_configured

    if prefect_api_configured():
        yield
        return
    from comfy_gen.stack import Stack, free_port

    stack = Stack(home=home, port=free_port())
    try:
        stack.start_server()
        os.environ["PREFECT_API_URL"] = stack.api_url
        yield
    finally:
        _drain_prefect_clients()
        os.environ.pop("PREFECT_API_URL", None)
        stack.stop()


def _drain_prefect_clients() -> None:
    """Send the logs and events still queued in this process before the server stops."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=10)


def _check_recipe(recipe: Path, backend: str | None, item_range: str | None = None) -> None:
    """Load and expand the recipe (RecipeError: ``file:line: path: message``) before
    any Prefect server or flow run exists, so a broken file costs no start-up and
    leaves no Failed run behind. The flow checks it again as its own input."""
    from comfy_gen.runs import plan_run

    # The same checks the flow makes (recipe, expansion, backend, output folder), minus the
    # folder confinement that protects deployments (the local user named this file).
    plan = plan_run(recipe, settings=get_settings(), backend=backend, confine=False, migrate=False)
    if item_range:
        from comfy_gen.chunks import select_items

        select_items(plan.items, item_range)   # UsageError (exit 2) for a range selecting nothing


def _run_and_report(recipe: str, as_json: bool, verbose: bool = False, **kwargs: Any) -> None:
    """Run the flow with a progress display and print its summary, also when some
    items failed (exit 1). The display goes to stdout, or to stderr with --json
    (stdout then holds only the JSON): live on a terminal, else a line per item."""
    from comfy_gen.cli.progress import RunDisplay
    from comfy_gen.errors import BatchFailed

    try:
        with RunDisplay(sys.stderr if as_json else sys.stdout, verbose=verbose) as display:
            summary = run_flow(recipe, display=display, **kwargs)
    except BatchFailed as exc:
        if exc.summary:
            _print_summary(exc.summary, as_json)
        raise
    _print_summary(summary, as_json)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
    busy = summary.get("gpu_busy_fraction")
    click.echo(f"Recipe {summary['recipe']}: {summary['items']} items ({counts}); "
               f"{summary['jobs']} ComfyUI jobs; {summary['cached']} cached.")
    if summary.get("pass_rate") is not None:
        click.echo(f"Validation pass rate: {100 * summary['pass_rate']:.1f} %")
    if busy is not None:
        click.echo(f"GPU busy: {100 * busy:.1f} % of the batch span")
    if summary.get("validation_skipped"):
        click.secho("Validation was SKIPPED (CLIP model unavailable; the recipe allows it).", fg="yellow")
    click.echo(f"Images:        {summary['items_dir']}")
    if summary.get("contact_sheet"):
        click.echo(f"Contact sheet: {summary['contact_sheet']}")
    click.echo(f"Run record:    {summary['run_dir']}")
    if summary.get("flow_run_id"):
        click.echo(f"Prefect run:   {summary['flow_run_id']} "
                   f"(browse: PREFECT_HOME={prefect_home(get_settings())} prefect server start)")


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Re-render items that are already stored.")
@click.option("--upload/--no-upload", default=None, help="Override the recipe's output.upload.")
@click.option("--backend", default=None, help="Backend name from settings (overrides the recipe's).")
@click.option("--url", default=None, help="ComfyUI URL (default: COMFY_GEN_COMFYUI_URL).")
@click.option("--max-items", type=click.IntRange(min=1), default=None, help="Only the first N items (N >= 1).")
@click.option("--items", "item_range", default=None, metavar="FIRST-LAST",
              help="Only these item numbers, e.g. 1001-2000 (one chunk of a large recipe).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Show every item's Prefect log lines too.")
def run(recipe: str, force: bool, upload: bool | None, backend: str | None, url: str | None,
        max_items: int | None, item_range: str | None, as_json: bool, verbose: bool) -> None:
    """Render RECIPE through the Prefect flow (no server needed)."""
    _use_url(url)
    if not Path(recipe).is_file():
        raise click.BadParameter(f"No such recipe file: {recipe}", param_hint="RECIPE")
    _allow_recipe_folder(Path(recipe).resolve().parent)
    _check_recipe(Path(recipe).resolve(), backend, item_range)
    _run_and_report(str(Path(recipe).resolve()), as_json, verbose, force=force, upload=upload, backend=backend,
                    max_items=max_items, items=item_range)


@click.command("demo")
@click.option("--force", is_flag=True, help="Re-render even if the demo images exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Show every item's Prefect log lines too.")
def demo(force: bool, as_json: bool, verbose: bool) -> None:
    """Render recipes/demo.yaml end to end (built-in emulator when no ComfyUI is configured)."""
    settings = get_settings()
    recipe = Path(settings.recipes_dir) / "demo.yaml"
    started = time.monotonic()
    if not Path(settings.clip_model).exists() and not hub_offline_set():
        # The demo never downloads a model: it validates with a CLIP model that is
        # already on disk (a local folder or the Hugging Face cache), else skips loudly.
        os.environ["HF_HUB_OFFLINE"] = "1"
        click.echo("Demo: model downloads are off (HF_HUB_OFFLINE=1); set COMFY_GEN_CLIP_MODEL to a "
                   "local CLIP folder to validate the demo images.", err=True)
    with backend_or_emulator():
        _run_and_report(str(recipe.resolve()), as_json, verbose, force=force)
    if not as_json:
        click.echo(f"Demo finished in {time.monotonic() - started:.1f} s.")


class _StopSignals:
    """Within ``with``: SIGINT, SIGTERM and SIGHUP (SIGBREAK on Windows) raise
    KeyboardInterrupt once. After the first one, or after ``cleanup_started()``,
    they are ignored, so a second Ctrl-C or the terminal closing cannot cut the
    cleanup short and orphan what we started."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")

    def __init__(self) -> None:
        self.stopping = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt

    def cleanup_started(self) -> None:
        self.stopping = True

    def __enter__(self) -> "_StopSignals":
        import signal

        for name in self.NAMES:
            if hasattr(signal, name):
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@click.command("up")
@click.option("--port", default=4200, show_default=True, type=click.IntRange(1, 65535),
              help="Prefect server port (127.0.0.1).")
@click.option("--web-port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the web page and HTTP API (comfy-gen serve) that run artifacts link to; 0 = none.")
@click.option("--database-url", default=None, metavar="URL",
              help="PostgreSQL for the Prefect server (default: COMFY_GEN_PREFECT_DATABASE_URL, else SQLite); "
                   "the workers' GPU gate then uses it too (gpu_gate=postgres) unless COMFY_GEN_GPU_GATE is set.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 32),
              help="Process workers on the one work pool.")
@click.option("--worker-limit", default=None, type=click.IntRange(1, 1000),
              help="Flow runs each worker runs at once (default: no limit), so runs spread over the workers.")
def up(port: int, web_port: int, database_url: str | None, workers: int, worker_limit: int | None) -> None:
    """Start a local Prefect server, deploy, start the web page and the workers (and the emulator
    if needed); Ctrl-C stops all."""
    from comfy_gen.stack import Stack, prefect_database_url
    from comfy_gen.urls import redact_url

    settings = get_settings()
    home = prefect_home(settings)
    source = "--database-url"
    if not database_url:
        database_url, source = settings.secret("prefect_database_url"), "COMFY_GEN_PREFECT_DATABASE_URL"
    if database_url:
        prefect_database_url(database_url, source)  # a wrong URL is refused before anything starts
    stack = Stack(home=home, port=port, database_url=database_url)
    with _StopSignals() as signals:
        try:
            stack.check_port()  # before the emulator: a taken port is refused with nothing started
            with backend_or_emulator(step_time=0.2) as url:
                try:
                    click.echo(f"Starting Prefect server on {stack.ui_url} (PREFECT_HOME={home}) ...")
                    if database_url:
                        click.echo(f"Prefect database: {redact_url(prefect_database_url(database_url))}")
                    stack.start_server(ui=True)
                    stack.create_pool()
                    stack.deploy()
                    worker_env = {"COMFY_GEN_COMFYUI_URL": url or ""}
                    worker_env.update(_gate_env(settings, database_url))
                    web = stack.start_web(web_port, worker_env) if web_port else None
                    if web:
                        worker_env["COMFY_GEN_PUBLIC_URL"] = web  # artifacts link to pictures, no S3 needed
                    stack.start_workers(workers, worker_env, limit=worker_limit)
                    click.echo(f"Prefect UI:  {stack.ui_url}")
                    click.echo(f"Workers:     {workers} on pool 'comfy-gen' (GPU gate: "
                               f"{worker_env.get('COMFY_GEN_GPU_GATE', settings.gpu_gate)})")
                    if web:
                        click.echo(f"Web page:    {web}  (run artifacts link here)")
                    click.echo(f"ComfyUI:     {url}")
                    click.echo("Run a recipe:")
                    click.echo(f"  PREFECT_API_URL={stack.api_url} prefect deployment run "
                               "'render-recipe/on-demand' --param recipe=recipes/demo.yaml")
                    click.echo("Press Ctrl-C to stop.")
                    _wait_while_running(stack)
                finally:
                    signals.cleanup_started()
                    click.echo("Stopping ...")
                    stack.stop()
        except KeyboardInterrupt:
            pass
    click.echo("Stopped.")


def _gate_env(settings: Any, database_url: str | None) -> dict[str, str]:
    """Worker settings for ``up --database-url``: flows on several hosts share one
    Prefect server, so the GPU bound moves to the same PostgreSQL (advisory locks create
    no tables) unless COMFY_GEN_GPU_GATE was chosen explicitly."""
    if not database_url or "gpu_gate" in settings.model_fields_set:
        return {}
    env = {"COMFY_GEN_GPU_GATE": "postgres"}
    if not settings.secret("gpu_gate_database_url"):
        env["COMFY_GEN_GPU_GATE_DATABASE_URL"] = database_url
    return env


def _wait_while_running(stack: Any) -> None:
    """Block until a stop signal (KeyboardInterrupt) or one of our processes dies."""
    from comfy_gen.errors import ConfigError

    while True:
        for proc, log_path in zip(stack.procs, stack.logs):
            if proc.poll() is not None:
                raise ConfigError(f"A process of the stack exited (code {proc.returncode}); log: {log_path}")
        time.sleep(1)
