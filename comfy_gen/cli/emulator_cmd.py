"""``comfy-gen emulator``: run the ComfyUI protocol emulator in the foreground."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import click


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    # click's FloatRange lets NaN through (every comparison with NaN is false).
    if math.isnan(value):
        raise click.BadParameter("must be a number, not NaN")
    return value


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8188, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0 = any free port).")
@click.option("--step-time", default=0.02, show_default=True, type=click.FloatRange(0, 60), callback=_finite,
              help="Seconds per sampler step.")
@click.option("--model-switch-time", default=0.0, show_default=True, type=click.FloatRange(0, 600),
              callback=_finite,
              help="Seconds a job spends loading when its checkpoint or LoRAs differ from the previous job's.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for output/, input/ and temp/ (default: a temporary folder).")
@click.option("--previews/--no-previews", default=False, show_default=True,
              help="Send binary preview frames, like ComfyUI's --preview-method auto.")
@click.option("--custom-nodes/--no-custom-nodes", default=True, show_default=True,
              help="Serve the segment-anything and VideoHelperSuite node classes.")
def emulator(host: str, port: int, step_time: float, model_switch_time: float, data_dir: Path | None,
             previews: bool, custom_nodes: bool) -> None:
    """Run the built-in ComfyUI protocol emulator until Ctrl-C."""
    from comfy_gen.emulator import Emulator

    from comfy_gen.errors import UsageError

    try:
        emu = Emulator(host, port, step_time=step_time, data_dir=data_dir, previews=previews,
                       custom_nodes=custom_nodes, model_switch_time=model_switch_time).start()
    except OSError as exc:  # port taken, address not on this host, no permission
        raise UsageError(f"The emulator cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="Choose another --port (0 = any free port) or --host.") from exc
    click.echo(f"ComfyUI emulator listening on {emu.url} (data: {emu.data_dir})")
    click.echo("Press Ctrl-C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("Stopping.", err=True)
    finally:
        emu.stop()
