"""The corpus of malformed inputs: every file gets a clear error from the CLI.

Each case is an input file (in this folder, or made at test time when it cannot
be committed: FIFOs, devices, symlink loops, huge files) and the substrings its
error must contain. Every case must end with exit 2, name the file, and print
no traceback. Add a case by adding a file and a row below. Kinds: recipes,
categories, presets, workflows, metadata (damaged PNG chunks, `metadata show` /
`reproduce`), images (input images for `generate -i`), and settings (values of
COMFY_GEN_* variables: the variable is what the error must name). Binary files
come from build_binary_cases.py.
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
    "output-prefix-dotdot.yaml": ":4: $.output.prefix: may only contain letters",
    "output-dir-escape.yaml": ":4: $.output.dir: must be a relative folder inside the output folder",
    "steps-inf.yaml": ":4: $.defaults.steps: '1e400' is not of type 'integer'",
    "workflow-traversal.yaml": ":2: $.workflow: must be a workflow file name ending in .json",
    "nul-in-sampler.yaml": ":4: $.defaults.sampler: contains a NUL character",
    "surrogate-in-prompt.yaml": ":3: $.prompts[0]: contains a lone surrogate",
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
    "bad-tier.yaml": "policy_tier: 'adult' is not one of general, mature, explicit",
    "id-traversal.yaml": "id: '../../etc' is not a valid id",
    "keywords-not-mapping.yaml": "keywords: 5 is not of type 'object'",
    "nul-in-fragment.yaml": "prompts.positive_fragments.required[0]: contains a NUL character",
    "priority-inf.yaml": "composition.priority: inf is not of type 'integer'",
    "surrogate-fragment.yaml": "prompts.positive_fragments.required[0]: contains a lone surrogate",
}
PRESETS = {
    "alias-bomb.yaml": ":11: YAML aliases expand the document",
    "deep.yaml": ":2: YAML nested deeper than 64 levels",
    "invalid-utf8.yaml": "invalid UTF-8 at byte 31 (line 2)",
    "not-a-mapping.yaml": "expected a top-level 'presets:' mapping",
    "preset-not-mapping.yaml": "preset 'x' must be a mapping of settings",
    "python-tag.yaml": ":2: YAML syntax error: could not determine a constructor",
    "unknown-key.yaml": "preset 'x' has unknown keys: stepz",
    "cfg-nan.yaml": "preset 'x': cfg must be a finite number (got nan)",
    "loras-strings.yaml": "preset 'x': loras must be a list of {name, strength} mappings",
    "nul-in-sampler.yaml": "preset 'x': sampler contains a NUL character (at 2)",
    "steps-text.yaml": "preset 'x': steps must be an integer (got 'twenty')",
    "validate-text.yaml": "preset 'x': validate must be true or false",
    "width-float.yaml": "preset 'x': width must be an integer (got 512.5)",
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
# PNGs whose metadata is damaged: `metadata show` (or `reproduce` for reproduce-*).
# The files are written by build_binary_cases.py.
METADATA = {
    "bad-chunk-type.png": "damaged PNG: invalid chunk type b't3Xt' at byte 33",
    "bad-crc-text.png": "damaged PNG: chunk tEXt at byte 33 fails its CRC check",
    "huge-length.png": "damaged PNG: chunk tEXt at byte 33 claims 4294967280 bytes, past the end",
    "itxt-bad-flag.png": "iTXt chunk at byte 33: chunk 'comfygen_metadata': unknown compression flag",
    "itxt-bad-utf8.png": "iTXt chunk at byte 33: chunk 'comfygen_metadata': text is not valid UTF-8 (byte 0)",
    "itxt-truncated-header.png": "chunk 'comfygen_metadata': truncated iTXt header",
    "metadata-deep.png": "PNG chunk 'comfygen_metadata' is not valid JSON: nested too deeply",
    "metadata-list.png": "PNG chunk 'comfygen_metadata' is not a JSON object (got list)",
    "metadata-loras-bad.png": "field 'parameters.loras' must be a list of {name, strength}",
    "metadata-not-json.png": "PNG chunk 'comfygen_metadata' is not valid JSON: Expecting property name",
    "metadata-resolution-bad.png": "field 'parameters.resolution' must be [width, height]",
    "metadata-tags-list.png": "field 'organization.tags' must be an object",
    "metadata-workflow-int.png": "field 'workflow' must be an object (got int)",
    "no-iend.png": "damaged PNG: the file ends at byte 60 before the IEND chunk",
    "reproduce-lora-bad.png": "field 'comfy_gen.params' of its metadata: loras[0] has no name",
    "reproduce-params-list.png": "field 'comfy_gen.params' must be an object",
    "reproduce-params-type.png": "Generation parameter steps must be an integer (got 'twenty')",
    "text-no-keyword.png": "tEXt chunk at byte 33: no keyword (1-79 bytes, then a NUL)",
    "truncated.png": "damaged PNG: chunk tEXt at byte 33 claims 106 bytes, past the end of the file (60 bytes)",
    "ztxt-bad-zlib.png": "zTXt chunk at byte 33: chunk 'comfygen_metadata' is not a valid zlib stream",
    "ztxt-bomb.png": "chunk 'comfygen_metadata' inflates to more than 16777216 bytes",
}
# Input images for `generate -i` (img2img workflow); written by build_binary_cases.py.
IMAGES = {
    "bad-ihdr-crc.png": "is not a readable image: unknown or damaged image format",
    "bomb-pixels.png": "too large to decode: 100000000 pixels (possible decompression bomb)",
    "bomb.bmp": "too large to decode: 144000000 pixels (possible decompression bomb)",
    "empty.png": "is not a readable image: unknown or damaged image format",
    "text-file.png": "is not a readable image: unknown or damaged image format",
    "too-wide.png": "is 20000x8: each side may be at most 16384 pixels",
    "truncated-idat.png": "is not a readable image: image file is truncated",
    "truncated.jpg": "is not a readable image: unknown or damaged image format",
}
# Settings values from the environment: (variable, value, expected). The error names
# the variable (the "file" of a setting) and never echoes a credential.
SETTINGS = [
    ("COMFY_GEN_COMFYUI_URL", "http://127.0.0.1:99999", "the port must be a number from 1 to 65535"),
    ("COMFY_GEN_COMFYUI_URL", "ftp://127.0.0.1:8188", "must be an http:// or https:// URL"),
    ("COMFY_GEN_COMFYUI_URL", "http://", "the URL has no host"),
    ("COMFY_GEN_COMFYUI_URL", "http://u:hunter2@h:0", "the port must be a number from 1 to 65535"),
    ("COMFY_GEN_BACKENDS", '{"gpu1": "http://u:hunter2@h:1', "must be a JSON object like"),
    ("COMFY_GEN_BACKENDS", '{"gpu1": "http://h:0"}', "COMFY_GEN_BACKENDS[gpu1][url]: the port must be a number"),
    ("COMFY_GEN_BACKENDS", "[1, 2]", "Input should be a valid dictionary"),
    ("COMFY_GEN_GPU_LIMIT", "0", "greater than or equal to 1"),
    ("COMFY_GEN_GPU_LIMIT", "two", "Input should be a valid integer"),
    ("COMFY_GEN_HTTP_TIMEOUT", "-1", "Input should be greater than 0"),
    ("COMFY_GEN_HTTP_TIMEOUT", "nan", "Input should be a finite number"),
    ("COMFY_GEN_JOB_TIMEOUT", "inf", "Input should be a finite number"),
    ("COMFY_GEN_POLICY_TIER", "adult", "Input should be 'general', 'mature' or 'explicit'"),
    ("COMFY_GEN_GPU_GATE", "redis", "Input should be 'local', 'postgres', 'prefect' or 'none'"),
    ("COMFY_GEN_MINIO_ENDPOINT", "127.0.0.1:99999", "the port must be a number from 1 to 65535"),
    ("COMFY_GEN_MINIO_ENDPOINT", "u:hunter2@127.0.0.1:abc", "the port must be a number from 1 to 65535"),
    ("COMFY_GEN_MINIO_PUBLIC_URL", "not a url", "must be an http:// or https:// URL"),
    ("COMFY_GEN_INPUT_DIRS", "[unclosed", "must be a JSON list of folders"),
    ("COMFY_GEN_COMFYUI_ARGS", '--listen "unclosed', "No closing quotation"),
    ("COMFY_GEN_CATEGORIES_STRICT", "maybe", "Input should be a valid boolean"),
    ("COMFY_GEN_OUTPUT_DIR", "/tmp/\udcff", "the value is not valid UTF-8 (byte 0xff at 5)"),
    ("COMFY_GEN_PRESETS_FILE", "/tmp/\udcfe.yaml", "the value is not valid UTF-8 (byte 0xfe at 5)"),
    ("COMFY_GEN_FLOW_WORKERS", "1e9", "Input should be a valid integer"),
    ("COMFY_GEN_UPLOAD_WORKERS", "-3", "greater than or equal to 1"),
    ("COMFY_GEN_RETRY_DELAY", "-0.5", "greater than or equal to 0"),
]


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
    for kind, table in (("metadata", METADATA), ("images", IMAGES)):
        on_disk = sorted(p.name for p in (CORPUS / kind).iterdir())
        assert on_disk == sorted(table), f"tests/corpus/{kind}: files and table differ"
        cases += [pytest.param(kind, name, None, expected, id=f"{kind}/{name}") for name, expected in table.items()]
    for made in ("fifo", "directory", "symlink-loop"):
        cases.append(pytest.param("images", made + ".png", made, MADE[made][1], id=f"images/{made}"))
    for variable, value, expected in SETTINGS:
        cases.append(pytest.param("settings", variable, value, expected, id=f"settings/{variable}={value!r}"))
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
    if kind == "settings":  # `made` is the value; the variable is the thing to name
        code, output = run_cli(["storage", "status"], {name: made or ""})
        assert code == 2 and "Traceback" not in output, output
        assert name in output and expected in output, output
        assert "hunter2" not in output
        return
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
    elif kind == "metadata":
        args = ["reproduce" if name.startswith("reproduce-") else "metadata", *([] if name.startswith(
            "reproduce-") else ["show"]), str(path)]
        env = {"COMFY_GEN_COMFYUI_URL": "http://127.0.0.1:9"}  # refused before any server is asked
    elif kind == "images":
        emu = request.getfixturevalue("emu")  # the image is read after the server check
        args = ["generate", "-w", "sd15-img2img", "-p", "x", "--steps", "1", "-i", str(path)]
        env = {"COMFY_GEN_COMFYUI_URL": emu.url}
    else:
        emu = request.getfixturevalue("emu")  # the workflow is read after the server check
        args = ["generate", "-w", path.name, "-p", "x", "--steps", "1"]
        env = {"COMFY_GEN_COMFYUI_URL": emu.url}
    code, output = run_cli(args, env)
    assert code == 2, output
    assert "Traceback" not in output
    assert str(path) in output or path.name in output, output
    assert expected in output, output
