"""``comfy-gen emulator``: run the ComfyUI protocol emulator in the foreground."""

from __future__ import annotations

import threading
from pathlib import Path

import click


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8188, show_default=True, type=int, help="Port (0 = any free port).")
@click.option("--step-time", default=0.02, show_default=True, type=float,
              help="Seconds per sampler step.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for output/, input/ and temp/ (default: a temporary folder).")
@click.option("--previews/--no-previews", default=False, show_default=True,
              help="Send binary preview frames, like ComfyUI's --preview-method auto.")
@click.option("--custom-nodes/--no-custom-nodes", default=True, show_default=True,
              help="Serve the segment-anything and VideoHelperSuite node classes.")
def emulator(host: str, port: int, step_time: float, data_dir: Path | None, previews: bool,
             custom_nodes: bool) -> None:
    """Run the built-in ComfyUI protocol emulator until Ctrl-C."""
    from comfy_gen.emulator import Emulator

    emu = Emulator(host, port, step_time=step_time, data_dir=data_dir, previews=previews,
                   custom_nodes=custom_nodes).start()
    click.echo(f"ComfyUI emulator listening on {emu.url} (data: {emu.data_dir})")
    click.echo("Press Ctrl-C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("Stopping.", err=True)
    finally:
        emu.stop()
