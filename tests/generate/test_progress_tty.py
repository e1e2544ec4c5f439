"""`comfy-gen generate` on a terminal: a live rich line (state, steps, ComfyUI's ETA)
with messages above it; off a terminal the plain lines stay as they were."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from comfy_gen.emulator import Emulator
from tests.generate.helpers import run_cli
from tests.pty_run import run_in_pty, screen_lines


def _env(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(COMFY_GEN_COMFYUI_URL=url, TERM="xterm-256color", **extra)
    env.pop("NO_COLOR", None)
    return env


def _generate(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    code, text = run_in_pty([sys.executable, "-m", "comfy_gen.cli", "generate", "-w", "tiny-sd15",
                             "-p", "a fox in the snow", *args], env=env, timeout=180)
    return code, screen_lines(text)


def test_generate_draws_a_live_line_on_a_terminal(gen_env: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "fox.png"
    code, lines = _generate(_env(gen_env.url), "--steps", "8", "-o", str(out))
    assert code == 0, "\n".join(lines[-30:])
    assert out.exists() and lines[-1] == str(out)
    steps = [line for line in lines if re.search(r"\b\d+/8\b", line)]
    assert any(line.lstrip("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ").startswith("Sampling") and "ETA" in line for line in steps), steps
    assert steps[-1].split()[0] == "Done" and steps[-1].endswith("8/8"), steps[-1]
    assert any(line.startswith("Started ") for line in lines)
    assert any(line.startswith("Attempt 1/1 seed ") for line in lines)
    assert not any("Sampling [#" in line for line in lines)   # the old hand-drawn bar is gone


def test_generate_shows_validation_and_refinement_on_a_terminal(clip_env: Emulator, tmp_path: Path) -> None:
    code, lines = _generate(_env(clip_env.url, COMFY_GEN_CLIP_MODEL=os.environ["COMFY_GEN_CLIP_MODEL"]),
                            "--steps", "3", "--positive-threshold", "100", "--max-attempts", "2",
                            "-o", str(tmp_path / "strict.png"))
    assert code == 3, "\n".join(lines[-30:])   # kept best effort: validation failed
    assert any(line.lstrip("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ").startswith("Validating") for line in lines)
    attempts = [line for line in lines if line.startswith("Attempt ")]
    assert [a.split()[1] for a in attempts] == ["1/2", "2/2"], attempts


def test_generate_off_a_terminal_keeps_its_plain_lines(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", "tiny-sd15", "-p", "a fox", "--steps", "4",
                             "-o", str(tmp_path / "f.png"))
    assert code == 0, out + err
    bars = [line for line in err.splitlines() if line.startswith("Sampling [")]
    assert len(bars) == 4 and "\x1b[" not in err and "\r" not in err
    for n, line in enumerate(bars, start=1):
        assert re.fullmatch(rf"Sampling \[{'#' * (5 * n)}\s*\] {n}/4 \({25 * n}%\)( ETA \d+s)?", line), line
    assert any(line.startswith("Started ") for line in err.splitlines())
