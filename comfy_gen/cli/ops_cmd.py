"""`comfy-gen models|queue|cancel|server ...`: day-to-day operation of ComfyUI.

"Mine" in ``cancel --all-mine`` means jobs queued by any comfy-gen process: every
comfy-gen client id is ``comfy-gen-<uuid4>`` (``comfy_gen.comfyui.CLIENT_ID_PREFIX``),
and ComfyUI echoes the client id in each queue item's extra_data.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from comfy_gen.errors import ComfyUIError, UsageError

if TYPE_CHECKING:
    from comfy_gen.comfyui import ComfyUIClient, QueueItem
    from comfy_gen.config import Settings

URL_HELP = "ComfyUI base URL (default: COMFY_GEN_COMFYUI_URL)."


def _settings() -> "Settings":
    from comfy_gen.config import get_settings

    return get_settings()


def _client(url: str | None) -> "ComfyUIClient":
    from comfy_gen.comfyui import ComfyUIClient

    settings = _settings()
    if url is None:
        return ComfyUIClient.from_settings(settings)
    return ComfyUIClient(url, timeout=settings.http_timeout, connect_timeout=settings.connect_timeout,
                         retries=settings.http_retries, retry_delay=settings.retry_delay,
                         job_timeout=settings.job_timeout, poll_interval=settings.poll_interval)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# --- models ------------------------------------------------------------------------


@click.command()
@click.option("--loras", is_flag=True, help="Only LoRAs (same as --folder loras).")
@click.option("--folder", "-f", default=None, help="One model folder: checkpoints, vae, loras, ...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--url", default=None, help=URL_HELP)
def models(loras: bool, folder: str | None, as_json: bool, url: str | None) -> None:
    """List the models ComfyUI can load, by folder."""
    if loras and folder and folder != "loras":
        raise UsageError("Use either --loras or --folder, not both")
    with _client(url) as client:
        if loras or folder:
            data = {folder or "loras": client.models(folder or "loras")}
        else:
            data = client.available_models()
    if as_json:
        _dump(data)
        return
    for name, files in data.items():
        click.echo(f"{name} ({len(files)})")
        for file in files:
            click.echo(f"  {file}")


# --- queue and cancel ----------------------------------------------------------------


def _row(item: "QueueItem") -> str:
    owner = "comfy-gen" if item.is_comfy_gen else (item.client_id or "no client id")
    return f"  #{item.number:<5g} {item.prompt_id}  ({owner})"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--url", default=None, help=URL_HELP)
def queue(as_json: bool, url: str | None) -> None:
    """Show the running and pending jobs."""
    with _client(url) as client:
        state = client.get_queue()
    if as_json:
        _dump(state.to_dict())
        return
    click.echo(f"running ({len(state.running)})")
    for item in state.running:
        click.echo(_row(item))
    click.echo(f"pending ({len(state.pending)})")
    for item in state.pending:
        click.echo(_row(item))


@click.command()
@click.argument("prompt_id", required=False)
@click.option("--all-mine", is_flag=True, help="Cancel every job queued by comfy-gen (client id comfy-gen-*).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--url", default=None, help=URL_HELP)
def cancel(prompt_id: str | None, all_mine: bool, as_json: bool, url: str | None) -> None:
    """Cancel PROMPT_ID (delete it if pending, interrupt it if running), or --all-mine."""
    if bool(prompt_id) == all_mine:
        raise UsageError("Give either a PROMPT_ID or --all-mine")
    with _client(url) as client:
        if prompt_id:
            outcome = client.cancel(prompt_id)
            if outcome == "not_found":
                raise ComfyUIError(f"Job {prompt_id} is neither running nor pending on {client.display_url}",
                                   prompt_id=prompt_id, url=client.display_url)
            results: dict[str, str] = {prompt_id: outcome}
        else:
            results = _cancel_mine(client)
    if as_json:
        _dump(results)
    elif not results:
        click.echo("No comfy-gen jobs in the queue.")
    for pid, result in ({} if as_json else results).items():
        click.echo(f"{pid}: {result}")


def _cancel_mine(client: "ComfyUIClient") -> dict[str, str]:
    """Pending comfy-gen jobs first (so none starts in the gap), then the running one."""
    state = client.get_queue()
    results: dict[str, str] = {}
    pending = [i.prompt_id for i in state.pending if i.is_comfy_gen]
    if pending:
        client.delete_pending(pending)
        results.update({pid: "deleted" for pid in pending})
    for item in state.running:
        if item.is_comfy_gen and client.interrupt(item.prompt_id):
            results[item.prompt_id] = "interrupted"
    # A job that moved pending -> running between our calls is not deleted: interrupt it.
    for pid in pending:
        if client.interrupt(pid):
            results[pid] = "interrupted"
    return results


# --- server --------------------------------------------------------------------------


def _local(url: str | None) -> Any:
    from comfy_gen.server_control import LocalServer

    return LocalServer(_settings(), url=url)


@click.group()
def server() -> None:
    """Manage a local ComfyUI install (COMFY_GEN_COMFYUI_PATH, _PYTHON, _ARGS)."""


@server.command("start")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the API.")
@click.option("--url", default=None, help="URL to probe (default: from --listen/--port in COMFY_GEN_COMFYUI_ARGS).")
def server_start(timeout: float, url: str | None) -> None:
    """Start ComfyUI in the background and wait until its API answers."""
    status = _local(url).start(timeout=timeout)
    click.echo(f"ComfyUI is running (pid {status.pid}) at {status.url}; log: {status.log_path}")


@server.command("stop")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds before SIGKILL.")
def server_stop(timeout: float) -> None:
    """Stop the ComfyUI started by `server start`."""
    stopped = _local(None).stop(timeout=timeout)
    click.echo("ComfyUI stopped." if stopped else "ComfyUI was not running (no live pid file).")


@server.command("restart")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the API.")
@click.option("--url", default=None, help="URL to probe (default: from COMFY_GEN_COMFYUI_ARGS).")
def server_restart(timeout: float, url: str | None) -> None:
    """Stop, then start ComfyUI."""
    status = _local(url).restart(timeout=timeout)
    click.echo(f"ComfyUI restarted (pid {status.pid}) at {status.url}")


@server.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--url", default=None, help="URL to probe (default: from COMFY_GEN_COMFYUI_ARGS).")
def server_status(as_json: bool, url: str | None) -> int:
    """Process alive? API healthy? Exit code 0 only when the API answers."""
    status = _local(url).status()
    if as_json:
        _dump(status.to_dict())
    else:
        process = f"running (pid {status.pid})" if status.running else "not running (no live pid file)"
        api = "answers" if status.healthy else "does not answer"
        click.echo(f"process: {process}\nAPI at {status.url}: {api}\nlog: {status.log_path}")
    return 0 if status.healthy else 1
