"""Recipe loading, seed and matrix expansion: size known before allocation, deterministic ids.

A generated recipe either fails with a RecipeError (exit 2 at the CLI) or
expands to exactly the number of items its sections predict, each id unique,
and the same ids every time. A recipe over the item limit is refused without
building its items: peak memory stays small however large the request.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from comfy_gen.config import Settings
from comfy_gen.errors import RecipeError
from comfy_gen.recipes import expand, load_recipe
from comfy_gen.recipes.prompts import derive_seeds, resolve_seeds, seed_count
from comfy_gen.recipes.sections import MAX_ITEMS
from tests.conftest import REPO_ROOT

SETTINGS = Settings(workflows_dir=REPO_ROOT / "workflows")

seed_specs = st.one_of(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20, unique=True),
    st.fixed_dictionaries({"count": st.integers(1, 30)}),
    st.fixed_dictionaries({"start": st.integers(0, 2**32), "stop": st.integers(0, 2**32)},
                          optional={"step": st.integers(1, 2**31)}),
)


@given(seed_specs)
def test_seed_count_is_known_before_the_seeds_are_built(spec: dict | list) -> None:
    count = seed_count(spec)
    if count > MAX_ITEMS:
        return  # the loader refuses these on the count alone (next test)
    seeds = resolve_seeds(spec, salt="s")
    assert len(seeds) == count
    assert resolve_seeds(spec, salt="s") == seeds  # deterministic


@given(st.text(max_size=20), st.integers(1, 200))
def test_derived_seeds_are_distinct_deterministic_and_in_range(salt: str, count: int) -> None:
    seeds = derive_seeds(salt, count)
    assert len(set(seeds)) == count and seeds == derive_seeds(salt, count)
    assert all(0 <= s <= 2**32 - 1 for s in seeds)


axis_values = {
    "steps": st.lists(st.integers(1, 150), min_size=1, max_size=4, unique=True),
    "cfg": st.lists(st.sampled_from([1.0, 4.5, 7.0, 12.0, 30.0]), min_size=1, max_size=3, unique=True),
    "sampler": st.lists(st.sampled_from(["euler", "euler_ancestral", "dpmpp_2m"]), min_size=1, max_size=3,
                        unique=True),
}


@st.composite
def recipes(draw: st.DrawFn) -> tuple[dict, int]:
    """A recipe document and the item count its sections predict (None: over the limit)."""
    prompts = draw(st.lists(st.text(alphabet="abcdefgh ", min_size=1, max_size=12).map(lambda t: "a " + t),
                            min_size=1, max_size=4, unique=True))
    spec = draw(st.one_of(st.fixed_dictionaries({"count": st.integers(1, 5)}),
                          st.fixed_dictionaries({"start": st.integers(0, 10), "stop": st.integers(11, 16)}),
                          st.fixed_dictionaries({"start": st.just(0), "stop": st.integers(60_000, 2**32 - 1)})))
    axes = {name: draw(values) for name, values in axis_values.items() if draw(st.booleans())}
    doc: dict = {"name": "prop", "workflow": "tiny-sd15.json", "prompts": prompts, "seeds": spec}
    if axes:
        doc["matrix"] = {"axes": axes}
    predicted = len(prompts) * seed_count(spec) * math.prod(len(v) for v in axes.values())
    return doc, predicted


@given(recipes())
def test_generated_recipes_expand_to_the_predicted_count_with_stable_ids(tmp_path_factory, case) -> None:
    doc, predicted = case
    path = tmp_path_factory.mktemp("recipe") / "prop.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    if predicted > MAX_ITEMS:
        tracemalloc.start()
        try:
            try:
                expand(load_recipe(path, settings=SETTINGS), settings=SETTINGS)
                raise AssertionError(f"{predicted} items were not refused")
            except RecipeError as exc:
                assert "limit" in str(exc)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 32 << 20, f"refusing {predicted} items took {peak} bytes"
        return
    items = expand(load_recipe(path, settings=SETTINGS), settings=SETTINGS)
    assert len(items) == predicted
    ids = [item.id for item in items]
    assert len(set(ids)) == len(ids)
    assert [item.id for item in expand(load_recipe(path, settings=SETTINGS), settings=SETTINGS)] == ids


def test_fixture_path_is_a_folder() -> None:
    assert Path(SETTINGS.workflows_dir).is_dir()
