"""CLIP scoring on a tiny saved model: score math, batching, chunking, caching, load failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from comfy_gen.errors import ValidatorUnavailable
from comfy_gen.validation import (
    ImageValidator,
    chunk_token_ids,
    ensure_available,
    get_validator,
    validate_image,
)
from tests.conftest import REPO_ROOT

PROMPTS = ["a red car", "a blue sea", "a dog", "a photo of a cat", "sunset over the sea", "a green tree",
           "a red car", "a bird"]


def reference_scores(model_dir: Path, images, prompts: list[str]) -> list[float]:
    """CLIPScore computed independently: the full CLIPModel forward, its own
    image_embeds/text_embeds, explicit normalisation, 100 * max(cos, 0)."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    img = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
    txt = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
    cos = (img * txt).sum(dim=-1)  # pair i with i
    return [100.0 * max(float(c), 0.0) for c in cos]


def test_device_and_components_loaded(validator, tiny_clip_dir):
    from comfy_gen.validation.clip import default_device

    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert validator.device == "cpu"
    assert validator.model.training is False
    assert validator.processor.tokenizer is validator.tokenizer
    assert validator.model_name == str(tiny_clip_dir)


def test_scores_match_independent_clipscore(validator, tiny_clip_dir, images):
    expected = reference_scores(tiny_clip_dir, images, PROMPTS)
    got = validator.score_many(images, PROMPTS)
    assert [r["positive_score"] for r in got] == pytest.approx(expected, abs=1e-3)
    # The fixture model gives a spread of positive scores, so the check is not vacuous.
    assert sum(1 for s in expected if s > 1.0) >= 6
    assert max(expected) - min(expected) > 10


def test_negative_score_and_delta(validator, tiny_clip_dir, images):
    [pos] = reference_scores(tiny_clip_dir, images[2:3], ["a dog"])
    [neg] = reference_scores(tiny_clip_dir, images[2:3], ["blurry, bad quality"])
    result = validator.compute_clip_score(images[2], "a dog", "blurry, bad quality")
    assert result["positive_score"] == pytest.approx(pos, abs=1e-3)
    assert result["negative_score"] == pytest.approx(neg, abs=1e-3)
    assert result["score_delta"] == pytest.approx(pos - neg, abs=1e-3)
    # No negative (or an empty one): no negative keys, as in the seed.
    assert set(validator.compute_clip_score(images[2], "a dog")) == {"positive_score"}
    assert set(validator.compute_clip_score(images[2], "a dog", "")) == {"positive_score"}


def test_scores_are_clamped_at_zero(validator, images):
    # 100 * max(cos, 0): never negative, whatever the text.
    results = validator.score_many(images, "zebra xylophone quantum", "mirrored ghosting")
    assert all(r["positive_score"] >= 0 and r["negative_score"] >= 0 for r in results)


def test_batched_equals_one_at_a_time(validator, images, tmp_path):
    paths = []
    for i, img in enumerate(images[:4]):
        paths.append(tmp_path / f"img{i}.png")
        img.save(paths[-1])
    inputs = paths + images[4:]  # paths and PIL images mixed
    negatives = ["blurry", None, "blurry", "two cars", None, "", "blurry", "duplicate"]
    batched = validator.score_many(inputs, PROMPTS, negatives, batch_size=3)
    single = [validator.compute_clip_score(im, p, n) for im, p, n in zip(inputs, PROMPTS, negatives)]
    assert len(batched) == len(single) == 8
    for b, s in zip(batched, single):
        assert b.keys() == s.keys()
        for key in b:
            assert b[key] == pytest.approx(s[key], abs=1e-3)


def test_each_distinct_text_encoded_once(validator, images):
    text_rows, image_rows = [], []
    hooks = [
        validator.model.text_model.register_forward_hook(
            lambda module, args, kwargs, out: text_rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True),
        validator.model.vision_model.register_forward_hook(
            lambda module, args, kwargs, out: image_rows.append(kwargs["pixel_values"].shape[0]), with_kwargs=True),
    ]
    try:
        validator.score_many(images, ["a red car", "a dog"] * 4, "blurry", batch_size=4)
    finally:
        for h in hooks:
            h.remove()
    assert sum(text_rows) == 3          # "a red car", "a dog", "blurry" - once each
    assert image_rows == [4, 4]         # 8 images in batches of 4


def test_unreadable_image_gets_error_and_others_still_score(validator, images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    results = validator.score_many([images[0], broken, tmp_path / "missing.png"], "a red car")
    assert "positive_score" in results[0]
    assert "Cannot read image" in results[1]["error"] and "broken.png" in results[1]["error"]
    assert "missing.png" in results[2]["error"]
    verdict = validator.validate_image(broken, "a red car", positive_threshold=0.0)
    assert verdict["passed"] is False  # never a silent pass, even with a zero threshold
    assert verdict["reason"].startswith("CLIP scoring failed: Cannot read image")


def test_score_many_rejects_mismatched_lengths(validator, images):
    with pytest.raises(ValueError, match="one per image"):
        validator.score_many(images[:3], ["a", "b"])
    assert validator.score_many([], []) == []


# --- long prompts ------------------------------------------------------------------


def test_chunk_token_ids_windows():
    assert chunk_token_ids(list(range(160)), 75) == [list(range(75)), list(range(75, 150)), list(range(150, 160))]
    assert chunk_token_ids([1, 2], 75) == [[1, 2]]
    assert chunk_token_ids([], 75) == [[]]
    with pytest.raises(ValueError):
        chunk_token_ids([1], 0)


def _manual_embedding(validator, ids: list[int]) -> torch.Tensor:
    tok = validator.tokenizer
    row = torch.tensor([[tok.bos_token_id, *ids, tok.eos_token_id]])
    with torch.no_grad():
        out = validator.model.get_text_features(input_ids=row)
    out = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(out[0], dim=-1)


def test_long_prompt_is_chunked_and_averaged(validator):
    long_prompt = ", ".join(["a red car on the road at night"] * 12)
    ids = validator.tokenizer(long_prompt, add_special_tokens=False)["input_ids"]
    assert 150 < len(ids) <= 225  # three windows
    first, second, third = ids[:75], ids[75:150], ids[150:]
    mean = (_manual_embedding(validator, first) + _manual_embedding(validator, second)
            + _manual_embedding(validator, third)) / 3
    expected = torch.nn.functional.normalize(mean, dim=-1)
    with torch.no_grad():
        got = validator.text_embeddings([long_prompt])[0]
    assert torch.allclose(got, expected, atol=1e-5)
    # The tail matters: not the same as truncating to the first window.
    assert not torch.allclose(got, _manual_embedding(validator, first), atol=1e-3)


def test_short_prompt_is_a_single_window(validator):
    ids = validator.tokenizer("a red car", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        got = validator.text_embeddings(["a red car", "a dog and a cat"])[0]
    assert torch.allclose(got, _manual_embedding(validator, ids), atol=1e-5)


def test_long_prompt_scores_in_batch_like_alone(validator, images):
    long_prompt = " ".join(["highly detailed portrait of a bird with many flower"] * 10)
    batched = validator.score_many(images[:3], [long_prompt, "a bird", long_prompt])
    alone = validator.compute_clip_score(images[2], long_prompt)
    assert batched[2]["positive_score"] == pytest.approx(alone["positive_score"], abs=1e-3)


# --- thresholds and the result dict -------------------------------------------------


def test_validate_image_result_and_reasons(validator, images):
    score = validator.compute_clip_score(images[3], "a dog", "blurry")
    ok = validator.validate_image(images[3], "a dog", "blurry", positive_threshold=score["positive_score"] - 0.5)
    assert ok["passed"] is True and ok["reason"] == "Image passed validation"
    assert {"passed", "reason", "positive_score", "negative_score", "score_delta", "error"} <= set(ok)
    high = score["positive_score"] + 1.0
    low = validator.validate_image(images[3], "a dog", "blurry", positive_threshold=high)
    assert low["passed"] is False
    assert low["reason"] == f"Low positive CLIP score: {score['positive_score']:.2f} < {high:.2f}"
    delta_fail = validator.validate_image(images[3], "a dog", "blurry", positive_threshold=0.0,
                                          delta_threshold=score["score_delta"] + 1.0)
    assert delta_fail["passed"] is False and delta_fail["reason"].startswith("Low CLIP score delta:")
    # Without a negative prompt there is no delta to check.
    assert validator.validate_image(images[3], "a dog", positive_threshold=0.0, delta_threshold=50)["passed"]


def test_default_threshold_used_when_none_given(validator, images):
    from comfy_gen.validation import FALLBACK_POSITIVE_THRESHOLD

    assert validator.default_threshold == FALLBACK_POSITIVE_THRESHOLD  # a folder name not in the table
    result = validator.validate_image(images[0], "a red car")
    assert result["positive_threshold"] == FALLBACK_POSITIVE_THRESHOLD
    assert result["passed"] is (result["positive_score"] >= FALLBACK_POSITIVE_THRESHOLD)


def test_legacy_scale_threshold_warns(validator, images, caplog):
    with caplog.at_level("WARNING", logger="comfy_gen.validation"):
        validator.validate_image(images[0], "a red car", positive_threshold=0.25)
    assert "old 0-1 scale" in caplog.text


# --- process cache and load failures -----------------------------------------------


def test_get_validator_is_cached_per_model(tiny_clip_dir, monkeypatch, images):
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("COMFY_GEN_CLIP_DEVICE", "cpu")
    from comfy_gen.config import reset_settings_cache

    reset_settings_cache()
    first = get_validator()
    assert get_validator() is first
    assert get_validator(str(tiny_clip_dir)) is first
    assert ensure_available() is first
    module_level = validate_image(images[1], "a blue sea", positive_threshold=5.0)
    assert module_level == first.validate_image(images[1], "a blue sea", positive_threshold=5.0)
    assert get_validator() is first  # the module-level function built nothing new


def test_missing_folder_raises_validator_unavailable(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValidatorUnavailable) as info:
        ImageValidator(str(missing))
    assert str(missing) in info.value.message
    assert "COMFY_GEN_CLIP_MODEL" in info.value.hint and "--no-validate" in info.value.hint


def test_folder_without_model_raises_validator_unavailable(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ValidatorUnavailable, match="Cannot load CLIP model") as info:
        ensure_available(str(empty), device="cpu")
    assert isinstance(info.value.__cause__, Exception)


def test_uncached_hub_id_offline_raises_validator_unavailable():
    name = "comfy-gen-tests/no-such-clip-model"
    with pytest.raises(ValidatorUnavailable) as info:
        get_validator(name, device="cpu")
    assert name in info.value.message
    assert "COMFY_GEN_CLIP_MODEL" in str(info.value)


def test_importing_validation_does_not_import_torch():
    code = ("import sys, comfy_gen.validation, comfy_gen.strategies; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)
