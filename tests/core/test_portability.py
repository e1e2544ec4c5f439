"""Windows start-up, checked on Linux: nothing that `comfy-gen` loads at start-up or
for a command needs a POSIX-only module, and process groups live in one module."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

#: Standard modules that exist on POSIX only (Windows has no equivalent import).
POSIX_ONLY = ("crypt", "fcntl", "grp", "nis", "pty", "pwd", "resource", "spwd", "syslog", "termios", "tty")

#: Installs an import hook that makes every POSIX-only module missing, as on Windows.
PRELUDE = textwrap.dedent(f"""
    import importlib.abc, sys, warnings
    warnings.simplefilter("ignore")  # filelock warns that it falls back; Windows has msvcrt instead
    POSIX_ONLY = {POSIX_ONLY!r}

    class WindowsLike(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in POSIX_ONLY:
                raise ImportError(f"No module named {{name!r}} (POSIX-only, blocked)")
            return None

    for name in POSIX_ONLY:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, WindowsLike())
""")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT)


def test_the_hook_really_hides_posix_only_modules() -> None:
    result = _run("""
        try:
            import fcntl
        except ImportError:
            print("hidden")
    """)
    assert result.stdout.strip() == "hidden", result.stderr


def test_import_and_help_work_without_posix_only_modules() -> None:
    result = _run("""
        import comfy_gen, comfy_gen.cli
        from comfy_gen.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print("HELP-OK")
    """)
    assert result.returncode == 0, result.stderr
    assert "HELP-OK" in result.stdout and "Commands" in result.stdout


def test_every_command_module_and_the_process_modules_import_without_posix_only_modules() -> None:
    result = _run("""
        import importlib
        from comfy_gen.cli import COMMANDS
        modules = {module for module, _attr, _help in COMMANDS.values()}
        modules |= {"comfy_gen.gate", "comfy_gen.procs", "comfy_gen.stack", "comfy_gen.server_control"}
        for name in sorted(modules):
            importlib.import_module(name)
            print("imported", name)
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported comfy_gen.gate" in result.stdout


#: Calls that only exist on POSIX, or behave differently on Windows.
PROCESS_GROUP_CALLS = re.compile(r"\b(os\.killpg|os\.setsid|os\.getpgid|start_new_session|preexec_fn|"
                                 r"signal\.SIGKILL|signal\.SIGHUP|import fcntl)\b")


def test_process_groups_are_handled_only_in_comfy_gen_procs() -> None:
    offenders = []
    for folder in ("comfy_gen", "flows"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if path == REPO_ROOT / "comfy_gen" / "procs.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if PROCESS_GROUP_CALLS.search(line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use comfy_gen.procs instead:\n" + "\n".join(offenders)
