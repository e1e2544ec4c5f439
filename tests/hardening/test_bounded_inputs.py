"""Hostile recipe/category/preset files are refused in bounded time and memory.

Expansion bombs and YAML alias bombs run in a child process under an address
space limit (RLIMIT_AS): before the fixes they either died with MemoryError or
never finished; now they must end with the project's error and a small
tracemalloc peak.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from comfy_gen.categories.loader import load_file
from comfy_gen.errors import ConfigError, RecipeError
from comfy_gen.presets import load_presets
from comfy_gen.recipes import load_recipe
from comfy_gen.safeyaml import MAX_DEPTH, YamlSyntaxError, load_yaml
from tests.conftest import REPO_ROOT

#: Address-space cap for the child: the interpreter with comfy_gen.recipes
#: imported uses about 50 MB; four billion seeds would need ~150 GB.
CHILD_AS_LIMIT = 512 * 1024 * 1024
#: A refusal may allocate this much (parsing a tiny file plus the schema).
PEAK_LIMIT = 32 * 1024 * 1024

_CHILD = """
import resource, sys, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from comfy_gen.errors import ComfyGenError
from comfy_gen.recipes import load_recipe
tracemalloc.start()
try:
    load_recipe(sys.argv[1])
    print("LOADED")
except ComfyGenError as exc:
    print(exc)
print("PEAK", tracemalloc.get_traced_memory()[1])
"""

BILLION_LAUGHS = """\
name: bomb
workflow: tiny-sd15.json
prompts: [x]
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""

BOMBS = [
    pytest.param("prompts: [a cat]\nseeds: {start: 0, stop: 4294967295}\n",
                 ":4: $.seeds: 4294967295 seeds", id="seed-range-2^32"),
    pytest.param("prompts: [a cat]\nmatrix:\n  axes:\n    seed: {start: 7, stop: 50000000, step: 1}\n",
                 "$.matrix.axes.seed: 49999993 seeds", id="matrix-seed-range"),
    pytest.param("prompts: ['" + "{a|b}" * 24 + "']\n",
                 "$.prompts[0]: prompts expand to at least 16777216 prompts", id="template-2^24"),
    pytest.param("prompts: ['" + "{a|b}" * 14 + "']\n", "expands to more than 10000 prompts", id="template-2^14"),
    pytest.param("prompts:\n" + "".join(f"  - '{{{i}a|b}}{'{c|d}' * 12}'\n" for i in range(8)),
                 "$.prompts[6]: prompts expand to at least 57344 prompts, more than the item limit (50000)",
                 id="templates-over-item-limit"),
    # {2$$...} picks have no simple count: the lazy budget stops generation at the limit.
    pytest.param("prompts: ['" + ("{2$$" + "|".join("abcdefghijklmnopqrst") + "} ") * 2 + "']\n",
                 "expands to more than 10000 prompts", id="uncountable-template"),
    pytest.param("prompts: [a cat]\nmatrix:\n  axes:\n    steps: [" + ", ".join(["20"] * 300)
                 + "]\n    cfg: [" + ", ".join(["7"] * 300) + "]\n",
                 "expands to 90000 items (limit 50000)", id="matrix-product"),
    pytest.param(BILLION_LAUGHS.split("\n", 3)[3], "YAML aliases expand the document", id="billion-laughs"),
]


@pytest.mark.parametrize("body, expected", BOMBS)
def test_expansion_bombs_are_refused_in_little_memory(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "tiny-sd15.json").write_text("{}")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("name: bomb\nworkflow: tiny-sd15.json\n" + body)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMFY_GEN_WORKFLOWS_DIR": str(tmp_path / "workflows")}
    # The timeout only guards the suite against a hang; passing runs take about a second.
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(limit=CHILD_AS_LIMIT), str(recipe)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED" not in proc.stdout
    assert expected in proc.stdout, proc.stdout
    assert f"{recipe}:" in proc.stdout
    peak = int(proc.stdout.rsplit("PEAK", 1)[1])
    assert peak < PEAK_LIMIT, f"refusal allocated {peak} bytes"


# --- the YAML loader itself --------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param(BILLION_LAUGHS, "aliases expand the document", id="billion-laughs"),
    pytest.param("a: &a [1, *a]\n", "refers to a node that contains it", id="alias-cycle"),
    pytest.param("[" * 100_000 + "]" * 100_000, f"nested deeper than {MAX_DEPTH} levels", id="deep-flow"),
    pytest.param("".join(f"{'  ' * i}k:\n" for i in range(200)), f"nested deeper than {MAX_DEPTH}",
                 id="deep-block"),
    pytest.param("a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: *a{i - 1}, y{i}: 1}}\n" for i in range(1, 200)),
                 f"aliases nest deeper than {MAX_DEPTH} levels", id="merge-chain"),
    pytest.param("seeds: [" + "9" * 5000 + "]\n", "cannot be read", id="int-too-long"),
])
def test_yaml_loader_refuses_hostile_documents(text: str, expected: str) -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_yaml(text)
    assert expected in info.value.message


def test_yaml_loader_keeps_ordinary_aliases_and_merges() -> None:
    doc = load_yaml("base: &b {steps: 20, cfg: 7}\nx: {<<: *b, steps: 30}\ny: [*b, *b]\n")
    assert doc.data["x"] == {"steps": 30, "cfg": 7}
    assert doc.data["y"] == [{"steps": 20, "cfg": 7}] * 2
    assert doc.duplicates == ()  # overriding a merged key is not a duplicate
    assert load_yaml("a: 1\na: 2\n").duplicates == ((("a",), 2),)


# --- files that are not bounded regular UTF-8 files -----------------------------

def _special_files(tmp_path: Path) -> list[tuple[str, Path, str]]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (1024 * 1024 + 1))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    return [("fifo", fifo, "not a regular file (a FIFO)"),
            ("device", Path("/dev/zero"), "not a regular file (a device)"),
            ("directory", folder, "not a regular file (a directory)"),
            ("too-big", big, "the limit is 1048576 bytes"),
            ("invalid-utf8", latin1, "invalid UTF-8 at byte 9 (line 1)"),
            ("symlink-loop", loop, "symlink loop")]


def test_special_files_are_refused_before_reading(tmp_path: Path) -> None:
    for case, path, expected in _special_files(tmp_path):
        with pytest.raises(RecipeError) as recipe_error:
            load_recipe(path)
        assert f"{path}:1: $: " in str(recipe_error.value) and expected in str(recipe_error.value), case

        category, problems = load_file(path)
        assert category is None and len(problems) == 1, case
        assert problems[0].file == str(path) and expected in problems[0].message, case

        with pytest.raises(ConfigError) as preset_error:
            load_presets(path)
        assert str(path) in str(preset_error.value) and expected in str(preset_error.value), case


def test_alias_bomb_in_category_and_preset_files(tmp_path: Path) -> None:
    category = tmp_path / "bomb.yaml"
    category.write_text(BILLION_LAUGHS)
    _, problems = load_file(category)
    assert "aliases expand the document" in problems[0].message
    assert problems[0].file == str(category)
    with pytest.raises(ConfigError, match="aliases expand the document") as info:
        load_presets(category)
    assert f"{category}:" in str(info.value)


def test_recipe_with_ordinary_alias_still_loads(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "tiny-sd15.json").write_text("{}")
    recipe = tmp_path / "ok.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: ok
        workflow: tiny-sd15.json
        prompts: [&p a cat, *p]
        seeds: {start: 0, stop: 25000}
    """))
    from comfy_gen.config import Settings

    loaded = load_recipe(recipe, settings=Settings(workflows_dir=tmp_path / "workflows"))
    assert [len(a.values) for a in loaded.axes] == [2, 25_000]
