"""comfy_gen.safeyaml on any input: a result or YamlSyntaxError, in bounded time and memory.

Inputs are arbitrary text, and YAML built to hurt: anchors and aliases fanned
out over several levels (billion-laughs shapes), merge keys, deep nesting.
The loader must answer each within the deadline (linear work, no expansion)
and its peak allocation must stay proportional to the input, never to what the
aliases would expand to.
"""

from __future__ import annotations

import tracemalloc

from hypothesis import example, given, settings
from hypothesis import strategies as st

from comfy_gen.safeyaml import YamlSyntaxError, load_yaml

#: Peak bytes allowed: a fixed allowance plus this much per input character
#: (PyYAML keeps tokens, events and nodes: a few hundred bytes per character at worst).
FIXED_BYTES = 8 << 20
PER_CHAR = 2_000


def _load_bounded(text: str) -> None:
    tracemalloc.start()
    try:
        try:
            load_yaml(text)
        except YamlSyntaxError as exc:
            assert exc.line >= 1 and exc.message
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < FIXED_BYTES + PER_CHAR * len(text), f"{peak} bytes for {len(text)} characters"


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    """``a0: &a0 [x, x]``, ``a1: &a1 [*a0, *a0, ...]``, ...: each level multiplies the size."""
    levels = draw(st.integers(1, 12))
    fan = draw(st.integers(1, 12))
    flow = draw(st.booleans())
    merge = draw(st.booleans())
    lines = ["a0: &a0 [" + ", ".join(["lol"] * fan) + "]"]
    for level in range(1, levels + 1):
        refs = [f"*a{level - 1}"] * fan
        if merge:
            lines.append(f"a{level}: &a{level}\n" + "".join(f"  <<: {r}\n" for r in refs[:1]) + f"  k{level}: v")
        elif flow:
            lines.append(f"a{level}: &a{level} [" + ", ".join(refs) + "]")
        else:
            lines.append(f"a{level}: &a{level}\n" + "".join(f"  - {r}\n" for r in refs).rstrip("\n"))
    if merge:  # merge keys need mappings, not the list at the bottom
        lines[0] = "a0: &a0 {x: lol}"
    lines.append(f"top: [*a{levels}, *a{levels}]")
    return "\n".join(lines) + "\n"


nested = st.integers(1, 400).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, "{a: " * n + "1" + "}" * n,
                               "".join(f"{'  ' * i}k{i}:\n" for i in range(n)) + "  " * n + "v\n"]))
yamlish = st.text(alphabet=st.sampled_from(list("ab:-[]{},&*!|>'\"#%@`? \n\t0123456789.<") + ["\x00", "é"]),
                  max_size=400)


@given(st.one_of(st.text(max_size=600), yamlish, alias_bombs(), nested))
@settings(deadline=10_000)  # per example: a cold start or a loaded CI machine, never a hang
@example("a: &a [*a]\n")                       # a cycle
@example("a: &a [x]\nb: *a\n" * 50)            # ordinary reuse (duplicate keys too)
@example("x: !!python/object:os.system ls\n")  # constructors that safe_load refuses
@example("[" * 100_000)                         # deep nesting, 100 kB
def test_any_input_gives_a_result_or_a_yaml_error_in_bounded_memory(text: str) -> None:
    _load_bounded(text)


@given(alias_bombs())
def test_alias_amplification_is_refused_or_small(text: str) -> None:
    # Either the document is small once expanded, or it was refused while loading.
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        assert "alias" in exc.message or "nested deeper" in exc.message
        return
    assert len(repr(doc.data)) < 10_000_000
