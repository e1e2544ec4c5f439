"""The answer cleaner and the style table (pure: no model, no server)."""

from __future__ import annotations

import pytest

from comfy_gen.enhance import STYLES, check_style, clean_output, system_prompt
from comfy_gen.enhance.clean import MAX_CHARS
from comfy_gen.errors import UsageError

PROMPT = "a red fox in fresh snow, golden hour light, shallow depth of field"

CLEAN = [
    pytest.param(PROMPT, PROMPT, id="plain"),
    pytest.param(f'"{PROMPT}"', PROMPT, id="double-quotes"),
    pytest.param(f"“{PROMPT}”", PROMPT, id="curly-quotes"),
    pytest.param(f"Here is the enhanced prompt:\n\n{PROMPT}\n\nThis adds lighting.", PROMPT, id="preamble-and-tail"),
    pytest.param(f"Sure! Here's a more vivid version:\n**{PROMPT}**", PROMPT, id="sure-and-markdown"),
    pytest.param(f"Enhanced prompt: {PROMPT}", PROMPT, id="label"),
    pytest.param(f"<think>The user wants a fox.\nAdd light.</think>\n{PROMPT}", PROMPT, id="think-block"),
    pytest.param(f"```\n{PROMPT}\n```", PROMPT, id="code-fence"),
    pytest.param(f"- {PROMPT}", PROMPT, id="bullet"),
    pytest.param(f"  {PROMPT.replace(' ', '   ')}  ", PROMPT, id="spaces-collapsed"),
    pytest.param("", None, id="empty"),
    pytest.param("<think>still thinking about the fox", None, id="unclosed-think"),
    pytest.param("!!! ??? ### 123 %%%", None, id="punctuation"),
    pytest.param("fox", None, id="too-short"),
    pytest.param("\ufffd\ufffd\ufffd \x00\x01 \ufffd", None, id="decoding-garbage"),
    pytest.param("Here is the prompt:", None, id="only-preamble"),
]


@pytest.mark.parametrize("answer, expected", CLEAN)
def test_clean_output_keeps_the_prompt_line_or_refuses(answer: str, expected: str | None) -> None:
    assert clean_output(answer) == expected


def test_clean_output_bounds_length_on_a_phrase_boundary() -> None:
    long = ", ".join(f"detail number {i}" for i in range(200))
    cleaned = clean_output(long)
    assert cleaned is not None and len(cleaned) <= MAX_CHARS
    assert long.startswith(cleaned) and not cleaned.endswith(",")
    assert cleaned.rsplit(", ", 1)[-1].startswith("detail number")  # never cut mid-phrase


def test_unknown_style_lists_the_known_ones() -> None:
    with pytest.raises(UsageError) as info:
        check_style("baroque")
    assert all(name in str(info.value) for name in STYLES)
    assert check_style(None) == "photographic" and check_style(" Cinematic ") == "cinematic"


def test_styles_shape_the_system_prompt_and_retries_ask_for_more_detail() -> None:
    prompts = {name: system_prompt(name) for name in STYLES}
    assert len(set(prompts.values())) == len(STYLES)
    assert "film still" in prompts["cinematic"] and "one line" in prompts["minimal"]
    assert "more detailed" in system_prompt("cinematic", detail=2)
    assert "highly detailed" in system_prompt("cinematic", detail=3) == system_prompt("cinematic", detail=9)


def test_recipe_schema_lists_exactly_the_styles() -> None:
    from comfy_gen import jsonschemas
    from comfy_gen.recipes.loader import SCHEMA_PATH

    schema = jsonschemas.load(SCHEMA_PATH)
    assert sorted(schema["properties"]["enhance"]["properties"]["style"]["enum"]) == sorted(STYLES)
