"""Model affinity: items grouped by checkpoint/LoRAs, jobs reaching each backend in that order."""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from comfy_gen.affinity import (BackendState, TurnOrder, affinity_order, graph_signature, item_signature,
                                prefer)
from comfy_gen.config import reset_settings_cache
from comfy_gen.errors import ExecutionInterrupted
from comfy_gen.params import GenerationParams, LoraSpec

ROOT = Path(__file__).resolve().parents[2]
TINY = json.loads((ROOT / "workflows" / "tiny-sd15.json").read_text())
CHECKPOINTS = ["tiny_sd15.safetensors", "v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"]

# --- pure pieces ---------------------------------------------------------------------


def test_affinity_order_groups_by_first_appearance_and_keeps_order_within_a_group() -> None:
    items = ["a1", "b1", "c1", "a2", "b2", "c2", "a3"]
    assert affinity_order(items, key=lambda s: s[0]) == ["a1", "a2", "a3", "b1", "b2", "c1", "c2"]
    assert affinity_order([], key=str) == []


def test_graph_signature_names_checkpoints_unets_and_loras_with_strengths() -> None:
    graph = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
             "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "u.safetensors", "weight_dtype": "default"}},
             "3": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "l.safetensors",
                                                          "strength_model": 0.5, "strength_clip": 1.0}},
             "4": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "seed": 1}},
             "5": {"class_type": "VAELoader", "inputs": {"vae_name": "v.safetensors"}}}
    assert graph_signature(graph) == ("ckpt_name=x.safetensors", "lora_name=l.safetensors@0.5/1.0",
                                      "unet_name=u.safetensors")
    assert graph_signature({"1": {"class_type": "EmptyImage", "inputs": {}}}) == ()


def test_item_signature_is_the_composed_graphs_and_ignores_other_parameters() -> None:
    from comfy_gen.workflow import apply_params

    params = GenerationParams(checkpoint=CHECKPOINTS[1], loras=(LoraSpec("tiny_sd15_lora.safetensors", 0.7),),
                              prompt="a cat", seed=4, steps=9)
    assert item_signature(TINY, params) == graph_signature(apply_params(TINY, params))
    assert item_signature(TINY, params) == item_signature(TINY, params.replace(prompt="a dog", seed=5))
    assert item_signature(TINY, params) != item_signature(TINY, params.replace(loras=()))
    assert item_signature(TINY, GenerationParams()) == ("ckpt_name=tiny_sd15.safetensors",)


WARM = ("ckpt_name=a",)
PREFER_CASES = [
    pytest.param([BackendState("x", 0, 2), BackendState("y", 1, 2, WARM)], WARM, "y", id="free-and-warm-beats-idler"),
    pytest.param([BackendState("x", 0, 2), BackendState("y", 2, 2, WARM)], WARM, "x", id="a-free-slot-beats-a-warm-model"),
    pytest.param([BackendState("x", 1, 2), BackendState("y", 0, 2)], WARM, "y", id="else-least-outstanding"),
    pytest.param([BackendState("x", 1, 2), BackendState("y", 1, 2)], None, "x", id="ties-go-to-the-first"),
    pytest.param([BackendState("x", 2, 2), BackendState("y", 3, 3, WARM)], WARM, "y", id="all-full-warm-first"),
    pytest.param([BackendState("x", 1, 2, ()), BackendState("y", 0, 2)], (), "y", id="no-models-no-warmth"),
]


@pytest.mark.parametrize(("candidates", "models", "expected"), PREFER_CASES)
def test_prefer(candidates: list[BackendState], models: Any, expected: str) -> None:
    chosen = prefer(candidates, models)
    assert chosen is not None and chosen.name == expected


def test_prefer_without_candidates() -> None:
    assert prefer([], WARM) is None


def _race(turns: TurnOrder, ids: list[str], *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Threads started in reverse order; each enters the (wrapped) gate once. The entry order."""
    entered: list[str] = []
    lock = threading.Lock()

    def item(item_id: str) -> None:
        turns.started(item_id)
        try:
            if item_id in skip:
                return  # e.g. found in the cache: never at the gate
            with turns.gate(item_id, nullcontext()):
                with lock:
                    entered.append(item_id)
        finally:
            turns.passed(item_id)

    threads = [threading.Thread(target=item, args=(i,)) for i in reversed(ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return entered


def test_turn_order_without_groups_lets_items_through_in_lane_order_whatever_the_thread_order() -> None:
    ids = [f"i{n}" for n in range(8)]
    turns = TurnOrder.of(ids, item_id=str, lane=lambda i: "ab"[int(i[1:]) % 2])
    entered = _race(turns, ids, skip=frozenset({"i2"}))
    assert [i for i in entered if i in ids[::2]] == ["i0", "i4", "i6"]
    assert [i for i in entered if i in ids[1::2]] == ["i1", "i3", "i5", "i7"]
    # A second entry (a refinement attempt, a retry) and an item outside the order never wait.
    assert sorted(_race(turns, ["i0", "zz"])) == ["i0", "zz"]


def test_turn_order_with_groups_is_strict_between_groups_only() -> None:
    ids = ["a1", "a2", "a3", "b1", "b2", "c1"]
    turns = TurnOrder.of(ids, item_id=str, lane=lambda i: "gpu", group=lambda i: i[0])
    entered = _race(turns, ids)
    assert set(entered[:3]) == {"a1", "a2", "a3"} and set(entered[3:5]) == {"b1", "b2"} and entered[5] == "c1"


def test_turn_order_skips_an_item_that_never_starts_and_ends_waits_on_cancel() -> None:
    turns = TurnOrder({"a": [["never"], ["x"]]}, stall=0.2)
    assert _race(turns, ["x"]) == ["x"]  # "never" did not start: skipped, not waited for forever
    cancelled = threading.Event()
    turns = TurnOrder({"a": [["first"], ["second"]]}, cancelled=cancelled)
    turns.started("first")
    cancelled.set()
    with pytest.raises(ExecutionInterrupted):
        turns.wait("second")


# --- through the flow, against emulators -------------------------------------------

pytestmark_flow = pytest.mark.usefixtures("prefect_harness")


def _recipe(name: str, seeds: int, backends: str = "") -> str:
    # seeds first: the checkpoint axis varies fastest, so recipe order alternates checkpoints
    return f"""
        name: {name}
        workflow: tiny-sd15.json
        prompts: [a lighthouse]
        seeds: {{start: 1, stop: {seeds + 1}}}
        matrix:
          axes:
            checkpoint: {json.dumps(CHECKPOINTS)}
        {backends}
    """


def _render(path: Path) -> dict[str, Any]:
    from flows.render_recipe import render_recipe

    return render_recipe(recipe=str(path))


def _stored(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """item id -> what identifies it: job key, prompt id, seed, checkpoint, file name, pixels."""
    from PIL import Image

    out = {}
    for image in Path(summary["items_dir"]).glob("*.png"):
        meta = json.loads(image.with_name(image.name + ".json").read_text())
        info = meta["comfy_gen"]
        with Image.open(image) as picture:
            pixels = picture.tobytes()
        out[image.stem] = {"job_key": info["job_key"], "prompt_id": info["result"]["prompt_id"],
                           "seed": info["params"]["seed"], "checkpoint": info["params"]["checkpoint"],
                           "backend": info["result"]["backend"], "pixels": pixels}
    return out


def _use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, affinity: bool, output: str,
         backends: dict[str, str]) -> None:
    monkeypatch.setenv("COMFY_GEN_MODEL_AFFINITY", "1" if affinity else "0")
    monkeypatch.setenv("COMFY_GEN_OUTPUT_DIR", str(tmp_path / output))
    monkeypatch.setenv("COMFY_GEN_BACKENDS", json.dumps(backends))
    reset_settings_cache()


@pytestmark_flow
def test_grouped_items_switch_models_once_per_checkpoint_and_render_the_same_items(
        emulator_factory, write_recipe, monkeypatch, tmp_path) -> None:
    path = write_recipe("interleaved", _recipe("interleaved", seeds=4))
    plain, grouped = emulator_factory(), emulator_factory()

    _use(monkeypatch, tmp_path, affinity=False, output="plain", backends={"default": plain.url})
    first = _render(path)
    _use(monkeypatch, tmp_path, affinity=True, output="grouped", backends={"default": grouped.url})
    second = _render(path)

    assert first["rendered"] == second["rendered"] == 12
    assert grouped.stats()["model_switches"] == 3, grouped.stats()["model_log"]
    # The order changed, nothing else: same ids, job keys, prompt ids, seeds and pixels.
    assert _stored(first) == _stored(second)

    again = _render(path)
    assert again["rendered"] == 0 and again["jobs"] == 0
    assert grouped.stats()["jobs_completed"] == 12


@pytestmark_flow
def test_two_backends_each_switch_once_per_checkpoint_placed_on_them(
        emulator_factory, write_recipe, monkeypatch, tmp_path) -> None:
    path = write_recipe("two", _recipe("two", seeds=5, backends="backends: [a, b]"))
    emus = {"a": emulator_factory(), "b": emulator_factory()}
    _use(monkeypatch, tmp_path, affinity=True, output="two", backends={n: e.url for n, e in emus.items()})
    summary = _render(path)
    assert summary["rendered"] == 15
    stored = _stored(summary).values()
    for name, emu in emus.items():
        placed = {item["checkpoint"] for item in stored if item["backend"] == name}
        stats = emu.stats()
        assert stats["jobs_completed"] == sum(item["backend"] == name for item in stored)
        assert stats["model_switches"] == len(placed), (name, stats["model_log"])
