"""The corpus of malformed inputs: every file gets a clear error from the CLI.

Each case is an input file (in this folder, or made at test time when it cannot
be committed: FIFOs, devices, symlink loops, huge files) and the substrings its
error must contain. Every case must end with exit 2, name the file, and print
no traceback. Add a case by adding a file and a row below.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from comfy_gen.cli import main
from comfy_gen.config import reset_settings_cache

CORPUS = Path(__file__).resolve().parent

RECIPES = {
    "alias-bomb.yaml": ":12: $: YAML aliases expand the document",
    "alias-cycle.yaml": ":3: $: YAML alias *p refers to a node that contains it",
    "backend-url.yaml": ":4: $.backend: must be a backend name",
    "bad-template.yaml": ":3: $.prompts[0]: invalid prompt template",
    "deep-block.yaml": ":66: $: YAML nested deeper than 64 levels",
    "deep-flow.yaml": ":3: $: YAML nested deeper than 64 levels",
    "duplicate-key.yaml": ":4: $.prompts: duplicate key",
    "empty.yaml": ":1: $: a recipe must be a mapping",
    "int-too-long.yaml": "$: YAML value cannot be read",
    "invalid-utf8.yaml": ":3: $: invalid UTF-8 at byte 51",
    "matrix-product.yaml": ":4: $.matrix: expands to 90000 items (limit 50000)",
    "matrix-seed-range.yaml": ":6: $.matrix.axes.seed: 100000000 seeds",
    "merge-chain.yaml": "$: YAML aliases nest deeper than 64 levels",
    "missing-wildcard.yaml": ":3: $.prompts[0]: wildcard __nowhere__ not found",
    "name-not-slug.yaml": ":1: $.name: must be a slug",
    "nan-cfg.yaml": ":4: $.defaults.cfg: cfg must be in",
    "negative-steps.yaml": ":4: $.defaults.steps: steps must be an integer",
    "not-a-mapping.yaml": ":1: $: a recipe must be a mapping",
    "nul-byte-raw.yaml": ":3: $: YAML syntax error: unacceptable character #x0000",
    "nul-in-prompt.yaml": ":3: $.prompts[0]: contains a NUL character",
    "python-tag.yaml": ":3: $: YAML syntax error: could not determine a constructor",
    "seed-range-2e32.yaml": ":4: $.seeds: 4294967295 seeds",
    "seeds-empty-range.yaml": ":4: $.seeds: the seed range is empty",
    "tab-indent.yaml": ":4: $: YAML syntax error",
    "template-2e24.yaml": ":3: $.prompts[0]: prompts expand to at least 16777216 prompts",
    "template-over-variants.yaml": ":3: $.prompts[0]: Prompt template",
    "two-documents.yaml": ":4: $: YAML syntax error: but found another document",
    "undefined-alias.yaml": ":3: $: YAML syntax error: found undefined alias",
    "unknown-field.yaml": ":4: $.seed: unknown property 'seed' (did you mean 'seeds'?)",
    "unknown-workflow.yaml": ":2: $.workflow: unknown workflow 'nope.json'",
    "utf16.yaml": ":1: $: invalid UTF-8 at byte 0",
    "zip-unequal.yaml": ":7: $.matrix.zip[0]: zip group has unequal lengths",
}
CATEGORIES = {
    "alias-bomb.yaml": "<root>: invalid YAML (line 10): YAML aliases expand the document",
    "alias-cycle.yaml": "<root>: invalid YAML (line 2): YAML alias *k refers to a node that contains it",
    "bad-id.yaml": "<root>: 'schema_version' is a required property",
    "deep-flow.yaml": "<root>: invalid YAML (line 2): YAML nested deeper than 64 levels",
    "invalid-utf8.yaml": "<root>: invalid UTF-8 at byte 7",
    "list.yaml": "<root>: the file must hold one mapping (a category), got list",
    "python-tag.yaml": "could not determine a constructor",
    "syntax.yaml": "invalid YAML (line 3, column 1)",
}
PRESETS = {
    "alias-bomb.yaml": ":11: YAML aliases expand the document",
    "deep.yaml": ":2: YAML nested deeper than 64 levels",
    "invalid-utf8.yaml": "invalid UTF-8 at byte 31 (line 2)",
    "not-a-mapping.yaml": "expected a top-level 'presets:' mapping",
    "preset-not-mapping.yaml": "preset 'x' must be a mapping of settings",
    "python-tag.yaml": ":2: YAML syntax error: could not determine a constructor",
    "unknown-key.yaml": "preset 'x' has unknown keys: stepz",
}
WORKFLOWS = {
    "nan.json": "NaN is not a valid JSON number",
    "infinity.json": "-Infinity is not a valid JSON number",
    "deep.json": "JSON nested too deeply",
    "truncated.json": "invalid JSON at line 1",
    "list.json": "is not a workflow graph",
    "no-class-type.json": "node '3' is missing the class_type property",
    "inputs-not-object.json": "node '3' has 'inputs' that is not an object",
    "empty-object.json": "is not a workflow graph: no nodes with a class_type",
    "ui-format.json": "the UI-format workflow has no executable nodes",
    "invalid-utf8.json": "invalid UTF-8 at byte 25",
}


# --- files that cannot be committed, made per test ---------------------------------

def _fifo(folder: Path, name: str) -> Path:
    os.mkfifo(folder / name)
    return folder / name


def _directory(folder: Path, name: str) -> Path:
    (folder / name).mkdir()
    return folder / name


def _loop(folder: Path, name: str) -> Path:
    (folder / name).symlink_to(folder / name)
    return folder / name


def _huge(folder: Path, name: str) -> Path:
    (folder / name).write_bytes(b"# padding\n" * 110_000)  # 1.1 MB, over the 1 MiB cap
    return folder / name


MADE: dict[str, tuple[Callable[[Path, str], Path], str]] = {
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "directory": (_directory, "not a regular file (a directory)"),
    "symlink-loop": (_loop, "symlink loop"),
    "huge": (_huge, "the limit is 1048576 bytes"),
}


def _cases() -> list[pytest.param]:
    cases = []
    for kind, table in (("recipes", RECIPES), ("categories", CATEGORIES), ("presets", PRESETS),
                        ("workflows", WORKFLOWS)):
        on_disk = sorted(p.name for p in (CORPUS / kind).iterdir())
        assert on_disk == sorted(table), f"tests/corpus/{kind}: files and table differ"
        cases += [pytest.param(kind, name, None, expected, id=f"{kind}/{name}") for name, expected in table.items()]
        suffix = ".json" if kind == "workflows" else ".yaml"
        for made, (_, expected) in MADE.items():
            if kind == "workflows" and made == "huge":
                continue  # the workflow cap is 16 MiB: not worth writing per run
            if kind == "categories":
                continue  # a category folder scan skips what is not a file (see test_bounded_inputs)
            cases.append(pytest.param(kind, made + suffix, made, expected, id=f"{kind}/{made}"))
    cases.append(pytest.param("recipes", "/dev/zero", "device", "not a regular file (a device)",
                              id="recipes/dev-zero"))
    return cases


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """main(args) as the console script runs it: exit code and all output."""
    def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_settings_cache()
        with pytest.raises(SystemExit) as info:  # anything else escaping is a traceback
            main(args)
        out = capsys.readouterr()
        return int(info.value.code or 0), out.out + out.err

    return run


@pytest.mark.parametrize("kind, name, made, expected", _cases())
def test_malformed_input_gives_a_clear_error(kind: str, name: str, made: str | None, expected: str,
                                             tmp_path: Path, run_cli, request: pytest.FixtureRequest) -> None:
    # Every input is placed in the working directory (tmp_path, an allowed folder).
    if made == "device":
        path = Path(name)
    elif made is not None:
        path = MADE[made][0](tmp_path, name)
    else:
        path = tmp_path / name
        shutil.copyfile(CORPUS / kind / name, path)
    env: dict[str, str] = {}
    if kind == "recipes":
        args = ["recipe", "validate", str(path)]
    elif kind == "categories":
        folder = tmp_path / "library" / "styles"
        folder.mkdir(parents=True)
        os.rename(path, folder / path.name)
        path = folder / path.name
        args = ["categories", "check", str(folder.parent)]
    elif kind == "presets":
        args = ["generate", "-w", "tiny-sd15.json", "-p", "x", "--preset", "x"]
        env = {"COMFY_GEN_PRESETS_FILE": str(path), "COMFY_GEN_COMFYUI_URL": "http://127.0.0.1:9"}
    else:
        emu = request.getfixturevalue("emu")  # the workflow is read after the server check
        args = ["generate", "-w", path.name, "-p", "x", "--steps", "1"]
        env = {"COMFY_GEN_COMFYUI_URL": emu.url}
    code, output = run_cli(args, env)
    assert code == 2, output
    assert "Traceback" not in output
    assert str(path) in output or path.name in output, output
    assert expected in output, output
