"""Process groups, on POSIX and Windows: the one place that knows how.

A child started with :func:`spawn_group` leads its own group (a new session on
POSIX, ``CREATE_NEW_PROCESS_GROUP`` on Windows), so a Ctrl-C in the terminal
reaches only us, and :func:`stop_groups` can end the child together with
everything it started (uvicorn, flow-run processes).

:func:`watched` wraps a command in a watchdog (``python -m comfy_gen.procs``)
that ends the command's group when the parent process is gone, even after a
SIGKILL of the parent. ``PR_SET_PDEATHSIG`` would do that on Linux only, and
not for the grandchildren.

Windows branches (``CTRL_BREAK_EVENT``, ``taskkill /T /F``, ``OpenProcess``)
follow the Python and Win32 documentation; CI runs on Linux only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

WINDOWS = sys.platform == "win32"
#: How often the watchdog looks for its parent, and stop_groups for survivors.
POLL_SECONDS = 0.2


def group_popen_kwargs() -> dict[str, Any]:
    """Popen keyword arguments that make the child lead a new process group."""
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


def spawn_group(args: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``args`` as the leader of its own process group."""
    return subprocess.Popen(list(args), **popen_kwargs, **group_popen_kwargs())


def watched(args: Sequence[str], *, parent: int | None = None) -> list[str]:
    """``args`` wrapped in the watchdog: it runs them and ends their group when
    ``parent`` (default: this process) exits. Start the result with :func:`spawn_group`."""
    return [sys.executable, "-m", "comfy_gen.procs", "--parent", str(parent or os.getpid()), "--", *args]


# -- liveness ------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as gone)."""
    if WINDOWS:
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _linux_state(pid)
    return state is None or state != "Z"


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in the group led by ``pgid`` (the
    leader may be gone while the rest of its group runs on)."""
    if WINDOWS:
        return _windows_pid_alive(pgid)
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int] | None:
    """Live pids in the group ``pgid``, from Linux /proc; None where it cannot be read.

    /proc is read because ``killpg(pgid, 0)`` also counts zombies, which a
    container's init may never reap.
    """
    proc = Path("/proc")
    if WINDOWS or not sys.platform.startswith("linux") or not proc.is_dir():
        return None
    members = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            fields = _linux_stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def command_line(pid: int) -> str | None:
    """The command line of ``pid`` where the OS shows it (Linux), else None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _linux_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _linux_state(pid: int) -> str | None:
    fields = _linux_stat(pid)
    return fields[0] if fields else None


def _windows_pid_alive(pid: int) -> bool:
    import ctypes

    process_query_limited_information, still_active = 0x1000, 259
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


# -- signals -------------------------------------------------------------------

def terminate_group(pgid: int) -> None:
    """Ask the whole group to stop: SIGTERM (POSIX) or CTRL_BREAK_EVENT (Windows)."""
    try:
        if WINDOWS:
            os.kill(pgid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError):
        pass  # already gone, or no longer ours


def kill_group(pgid: int) -> None:
    """End the whole group now: SIGKILL (POSIX) or ``taskkill /T /F`` (Windows)."""
    if WINDOWS:
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pgid)], capture_output=True, check=False)
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def stop_groups(procs: Iterable[subprocess.Popen[Any]], *, timeout: float = 10.0) -> list[int]:
    """Terminate the groups led by ``procs`` together, wait for them with one
    deadline, kill what is left. Returns the pids whose groups had to be killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None or group_alive(proc.pid):
            terminate_group(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _survivors(procs):
        time.sleep(POLL_SECONDS)
    killed = _survivors(procs)
    for pid in killed:
        kill_group(pid)
    hard_deadline = time.monotonic() + 5
    while time.monotonic() < hard_deadline and _survivors(procs):
        time.sleep(0.05)
    return killed


def _survivors(procs: list[subprocess.Popen[Any]]) -> list[int]:
    # poll() reaps an exited leader, so it does not linger as a zombie.
    return [p.pid for p in procs if p.poll() is None or group_alive(p.pid)]


# -- the watchdog (python -m comfy_gen.procs --parent PID -- COMMAND...) ------------

def _parent_gone(parent: int) -> bool:
    if WINDOWS:
        return not _windows_pid_alive(parent)
    # Once the parent dies we are re-parented, so a recycled parent pid cannot fool this.
    return os.getppid() != parent


def watch(parent: int, command: Sequence[str], *, grace: float = 10.0) -> int:
    """Run ``command`` in this process's group until it exits or ``parent`` is gone.

    Stop signals are left to the command (the whole group receives them), so the
    watchdog just outlives it and returns its exit code.
    """
    stop_signals = [signal.SIGINT, signal.SIGTERM]
    stop_signals += [signal.SIGBREAK] if WINDOWS else [signal.SIGHUP]  # type: ignore[attr-defined]
    for sig in stop_signals:
        signal.signal(sig, lambda *_: None)
    child = subprocess.Popen(list(command))
    while True:
        try:
            return child.wait(timeout=POLL_SECONDS * 2)
        except subprocess.TimeoutExpired:
            pass
        if _parent_gone(parent):
            break
    group = os.getpid() if WINDOWS else os.getpgid(0)
    if WINDOWS:
        terminate_group(group)
    else:
        os.killpg(group, signal.SIGTERM)  # our own handler ignores it
    try:
        return child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if WINDOWS:
            kill_group(child.pid)
            return child.wait()
        kill_group(group)  # ends us too
        return 137


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m comfy_gen.procs",
                                     description="Run COMMAND; end its process group when PARENT exits.")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    return watch(args.parent, command, grace=args.grace)


if __name__ == "__main__":
    raise SystemExit(main())
