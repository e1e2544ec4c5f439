"""@tag parsing, tag resolution and keyword inference (absolute confidence, phrases)."""

from __future__ import annotations

import pytest

from comfy_gen.categories import CategoryRegistry, confidence, infer, parse_tags, preview, resolve_tag, select
from tests.categories.conftest import make_category


def test_tags_weights_and_remaining_text() -> None:
    parsed = parse_tags("A red @Car at  @night:1.5 , @fog:0.25 with @cinematic:7 and me@example.com")
    assert [(t.tag, t.weight) for t in parsed.tags] == [("car", 1.0), ("night", 1.5), ("fog", 0.25),
                                                        ("cinematic", 2.0)]
    assert parsed.tags[3].clamped and not parsed.tags[1].clamped
    assert parsed.remaining == "A red at, with and me@example.com"


def test_tag_names_allow_dash_and_underscore() -> None:
    parsed = parse_tags("@golden-hour @low_poly @_x @9bad")
    assert [t.tag for t in parsed.tags] == ["golden-hour", "low_poly", "_x"]
    assert parsed.remaining == "@9bad"


def test_resolve_by_id_then_keyword(shipped: CategoryRegistry) -> None:
    assert resolve_tag("golden-hour", shipped, "general")[0].id == "golden_hour"
    cat, how = resolve_tag("sunset", shipped, "general")
    assert (cat.id, how) == ("golden_hour", "keyword")
    cat, how = resolve_tag("street_food", shipped, "general")  # multi-word keyword via _
    assert (cat.id, how) == ("food", "keyword")
    assert resolve_tag("nothing_like_this", shipped, "general") == (None, "")


def test_unknown_tags_are_reported_with_suggestions(shipped: CategoryRegistry) -> None:
    sel = select("@nigth @potrait a house", shipped, tier="general")
    assert [u["tag"] for u in sel.unmatched] == ["nigth", "potrait"]
    assert sel.unmatched[0]["suggestions"][0] == "night"
    assert sel.unmatched[1]["suggestions"][0] == "portrait"
    assert "Unknown tags ignored: @nigth, @potrait" in sel.trace.warnings


def test_repeated_tag_is_kept_once(shipped: CategoryRegistry) -> None:
    sel = select("@night @night:2 city", shipped, tier="general")
    assert [x["id"] for x in sel.explicit] == ["night"]
    assert sel.explicit[0]["weight"] == 1.0
    assert any("again" in w for w in sel.trace.warnings)


def test_confidence_formula_is_absolute() -> None:
    one_primary, one_specific, one_secondary = confidence([1.0]), confidence([0.8]), confidence([0.6])
    assert (one_primary, one_specific, one_secondary) == (0.7, 0.56, 0.42)
    assert one_secondary < one_specific < one_primary < confidence([1.0, 1.0]) == 0.91
    assert confidence([1.0] * 10) < 1.0


def test_inference_matches_multi_word_phrases(build_registry) -> None:
    reg = build_registry([
        make_category("portrait", keywords={"primary": ["portrait"], "specific": ["close-up portrait"]}),
        make_category("golden_hour", "setting", keywords={"primary": ["golden hour"], "secondary": ["warm"]}),
    ])
    hits = {i.id: i for i in infer("A Close-Up Portrait in the golden  hour", reg)}
    assert set(hits["portrait"].matched) == {"portrait", "close up portrait"}
    assert hits["portrait"].confidence == confidence([1.0, 0.8])
    assert hits["golden_hour"].matched == ("golden hour",)
    # A phrase never matches across unrelated words, nor inside a word.
    assert infer("golden fields at hour one, goldenhour", reg) == []


def test_inference_is_whole_word_and_plural_aware(build_registry) -> None:
    reg = build_registry([make_category("car", keywords={"primary": ["car"]}),
                          make_category("cat", keywords={"primary": ["cat"]})])
    assert [i.id for i in infer("three cars", reg)] == ["car"]
    assert infer("a scary cartoon; concatenate", reg) == []


def test_repeats_do_not_add_and_top_match_is_not_one(build_registry) -> None:
    reg = build_registry([make_category("rain", "setting", keywords={"primary": ["rain"], "secondary": ["wet"]})])
    once = infer("rain", reg)[0].confidence
    assert infer("rain rain rain rain", reg)[0].confidence == once == 0.7
    assert infer("rain, wet", reg)[0].confidence == confidence([1.0, 0.6])


def test_min_confidence_filters_and_order_is_by_confidence(build_registry) -> None:
    reg = build_registry([
        make_category("weak", keywords={"primary": ["zzz"], "secondary": ["hint"]}),
        make_category("strong", keywords={"primary": ["bold", "loud"]}),
        make_category("single", keywords={"primary": ["solo"]}),
    ])
    text = "hint bold loud solo"
    assert [i.id for i in infer(text, reg, min_confidence=0.3)] == ["strong", "single", "weak"]
    assert [i.id for i in infer(text, reg, min_confidence=0.5)] == ["strong", "single"]


def test_explicit_tags_never_truncated_and_inferred_fill_up(shipped: CategoryRegistry) -> None:
    sel = select("@car @night @rain @cinematic a city street in fog", shipped, tier="general", max_categories=2)
    assert [e.category.id for e in sel.entries] == ["car", "night", "rain", "cinematic"]
    sel = select("a city street in fog at night", shipped, tier="general", max_categories=2)
    assert len(sel.entries) == 2 and all(e.origin == "inferred" for e in sel.entries)


def test_enhances_boost_changes_the_ranking(build_registry) -> None:
    cats = [make_category("anchor", "style", keywords={"primary": ["anchor"]}, composition={"enhances": ["b"]}),
            make_category("a", "setting", keywords={"primary": ["alpha"]}),
            make_category("b", "setting", keywords={"primary": ["beta"]})]
    reg = build_registry(cats)
    assert [e.category.id for e in select("alpha beta", reg, tier="general", max_categories=1).entries] == ["a"]
    sel = select("@anchor alpha beta", reg, tier="general", max_categories=2)
    assert [e.category.id for e in sel.entries] == ["anchor", "b"]
    assert any("enhances boost" in s["detail"] for s in sel.trace.steps)


def test_inference_skips_candidates_that_would_conflict(shipped: CategoryRegistry) -> None:
    sel = select("@daytime a city street at night", shipped, tier="general")
    ids = [e.category.id for e in sel.entries]
    assert "night" not in ids and "city" in ids
    assert any(s["action"] == "skip_inferred" and "night" in s["detail"] and "conflicts" in s["detail"]
               for s in sel.trace.steps)


def test_preview_shape(shipped: CategoryRegistry) -> None:
    data = preview("@night:1.2 a city street @nope", registry=shipped)
    assert data["explicit_categories"] == [{"id": "night", "type": "setting", "display_name": "Night",
                                            "policy_tier": "general", "weight": 1.2}]
    assert [c["id"] for c in data["inferred_categories"]] == ["city"]
    assert data["unmatched_tags"][0]["tag"] == "nope"
    assert data["remaining_prompt"] == "a city street"
    assert data["total_categories"] == 2 and data["policy_violations"] == []


@pytest.mark.parametrize("bad", [{"max_categories": 0}, {"min_confidence": 1.5}])
def test_select_rejects_bad_options(shipped: CategoryRegistry, bad: dict) -> None:
    from comfy_gen.errors import UsageError

    with pytest.raises(UsageError):
        select("city", shipped, tier="general", **bad)


def test_explicit_clash_is_not_blamed_on_inferred_candidates(shipped: CategoryRegistry) -> None:
    sel = select("@night @daytime a city street", shipped, tier="general")
    assert [e.category.id for e in sel.entries] == ["night", "daytime", "city"]
