"""The catalog's API on SQLite and PostgreSQL: record, query, favorites, errors, rebuild."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from comfy_gen.catalog import Catalog, Favorite, Generation
from comfy_gen.errors import FavoriteNotFound, GenerationNotFound, MetadataNotFound, UsageError
from comfy_gen.exit_codes import exit_code_for
from tests.catalog.helpers import edit_sidecar, keep_fake_output, rows

T0 = datetime(2026, 1, 7, 12, 0, tzinfo=timezone.utc)


def test_record_reads_every_field_from_the_sidecar(catalog: Catalog, output_dir: Path) -> None:
    kept = keep_fake_output(output_dir, "item1", recipe="coast", run_id="20260107-120000-abcdef", status="passed",
                            score=31.5, categories=["portrait", "outdoor"], flow_run_id="flow-1",
                            recipe_hash="sha256:abc", created=T0 + timedelta(hours=2, microseconds=7))
    generation = catalog.record_sidecar(kept.sidecar)
    meta = json.loads(kept.sidecar.read_text())
    assert isinstance(generation, Generation)
    assert generation.generation_id == meta["comfy_gen"]["generation_id"] == meta["generation_id"]
    assert len(generation.generation_id) == 32
    assert (generation.item_id, generation.recipe, generation.run_id) == ("item1", "coast", "20260107-120000-abcdef")
    assert generation.recipe_hash == "sha256:abc" and generation.flow_run_id == "flow-1"
    assert generation.categories == ("portrait", "outdoor")
    assert generation.scores == {"positive_score": 31.5} and generation.verdict == "passed"
    assert generation.attempts == 1 and generation.prompt == "a lighthouse on a cliff"
    assert generation.params["seed"] == 1 and generation.params["steps"] == 4
    assert generation.local_path == str(kept.file.resolve()) and generation.sidecar_path == str(kept.sidecar)
    assert generation.created_at == T0 + timedelta(hours=2, microseconds=7)
    assert generation.created_at.tzinfo == timezone.utc
    assert not generation.favorite and generation.rating is None
    assert catalog.get(generation.generation_id) == generation
    assert json.loads(json.dumps(generation.to_dict()))["categories"] == ["portrait", "outdoor"]
    # An image path works as well as its sidecar.
    assert catalog.record_sidecar(kept.file) == generation


def test_recording_again_updates_the_same_row(catalog: Catalog, output_dir: Path) -> None:
    kept = keep_fake_output(output_dir, "one", categories=["a", "b"])
    first = catalog.record_sidecar(kept.sidecar)
    edit_sidecar(kept, storage={"url": "http://127.0.0.1:9000/bucket/adhoc/one.png", "key": "adhoc/one.png"},
                 comfy_gen={"categories": ["b"]})
    second = catalog.record_sidecar(kept.sidecar)
    assert second.generation_id == first.generation_id
    assert second.object_url == "http://127.0.0.1:9000/bucket/adhoc/one.png" and second.object_key == "adhoc/one.png"
    assert second.categories == ("b",)
    assert catalog.count() == 1


def test_list_is_newest_first_with_filters_count_and_pages(catalog: Catalog, output_dir: Path) -> None:
    specs = [  # name, recipe, run, verdict, categories
        ("a", "coast", "run1", "passed", ["portrait"]),
        ("b", "coast", "run1", "best_effort", ["outdoor"]),
        ("c", "coast", "run2", "passed", ["portrait", "outdoor"]),
        ("d", None, None, "unvalidated", []),
    ]
    ids = {}
    for hour, (name, recipe, run, verdict, cats) in enumerate(specs):
        kept = keep_fake_output(output_dir, name, recipe=recipe, run_id=run, status=verdict, categories=cats,
                                score=None if verdict == "unvalidated" else 30.0, created=T0 + timedelta(hours=hour))
        ids[name] = catalog.record_sidecar(kept.sidecar).generation_id
    assert [g.generation_id for g in catalog.list()] == [ids[n] for n in "dcba"]
    assert [g.generation_id for g in catalog.list(recipe="coast", run_id="run1")] == [ids["b"], ids["a"]]
    assert [g.generation_id for g in catalog.list(verdict="passed")] == [ids["c"], ids["a"]]
    assert [g.generation_id for g in catalog.list(category="outdoor")] == [ids["c"], ids["b"]]
    assert [g.generation_id for g in catalog.list(limit=2, offset=1)] == [ids["c"], ids["b"]]
    assert catalog.count() == 4 and catalog.count(recipe="coast") == 3 and catalog.count(verdict="failed") == 0
    assert catalog.count(category="portrait") == 2
    catalog.set_favorite(ids["b"])
    assert [g.generation_id for g in catalog.list(favorite=True)] == [ids["b"]]
    assert catalog.count(favorite=False) == 3


def test_favorites_create_update_list_and_delete(catalog: Catalog, output_dir: Path) -> None:
    portrait = catalog.record_sidecar(keep_fake_output(output_dir, "p", categories=["portrait"]).sidecar)
    landscape = catalog.record_sidecar(keep_fake_output(output_dir, "l", categories=["landscape"]).sidecar)

    fav = catalog.set_favorite(portrait.generation_id, rating=5, feedback="Perfect lighting", tags=["best", "best"])
    assert isinstance(fav, Favorite)
    assert (fav.rating, fav.feedback, fav.tags) == (5, "Perfect lighting", ("best",))
    assert fav.generation.favorite and fav.generation.rating == 5
    body = fav.to_dict()
    assert body["id"] == body["generation_id"] == portrait.generation_id and body["categories"] == ["portrait"]

    # None keeps what is there; a given field replaces it.
    again = catalog.set_favorite(portrait.generation_id, tags=["portfolio"])
    assert (again.rating, again.feedback, again.tags) == (5, "Perfect lighting", ("portfolio",))
    assert again.created_at == fav.created_at and again.updated_at >= fav.updated_at

    catalog.set_favorite(landscape.generation_id, rating=2)
    assert catalog.update_rating(landscape.generation_id, 3, feedback="ok").rating == 3
    assert [f.generation_id for f in catalog.favorites(min_rating=4)] == [portrait.generation_id]
    assert [f.generation_id for f in catalog.favorites(category="landscape")] == [landscape.generation_id]
    assert {f.generation_id for f in catalog.favorites()} == {portrait.generation_id, landscape.generation_id}
    assert catalog.count_favorites(min_rating=3) == 2

    assert catalog.delete_favorite(portrait.generation_id) is True
    assert catalog.delete_favorite(portrait.generation_id) is False
    assert catalog.get(portrait.generation_id).favorite is False  # the generation stays
    assert [f.generation_id for f in catalog.favorites()] == [landscape.generation_id]


def test_unknown_ids_raise_not_found_errors(catalog: Catalog, output_dir: Path) -> None:
    unknown = uuid.uuid4().hex
    assert catalog.get(unknown) is None
    with pytest.raises(GenerationNotFound) as info:
        catalog.set_favorite(unknown, rating=3)
    assert exit_code_for(info.value) == 2
    assert info.value.to_dict()["generation_id"] == unknown and info.value.to_dict()["error"] == "GenerationNotFound"
    with pytest.raises(GenerationNotFound):
        catalog.update_rating(unknown, 3)
    assert catalog.delete_favorite(unknown) is False
    known = catalog.record_sidecar(keep_fake_output(output_dir, "k").sidecar)
    with pytest.raises(FavoriteNotFound):  # a GenerationNotFound too: one 404 for the API
        catalog.update_rating(known.generation_id, 3)


def test_ids_are_found_in_any_uuid_spelling(catalog: Catalog, output_dir: Path) -> None:
    generation = catalog.record_sidecar(keep_fake_output(output_dir, "h").sidecar)
    hyphenated = str(uuid.UUID(generation.generation_id))
    assert catalog.get(hyphenated) == generation
    assert catalog.set_favorite(hyphenated.upper(), rating=1).generation_id == generation.generation_id


@pytest.mark.parametrize(("call", "message"), [
    (lambda cat, gid: cat.set_favorite(gid, rating=0), "rating"),
    (lambda cat, gid: cat.set_favorite(gid, rating=6), "rating"),
    (lambda cat, gid: cat.set_favorite(gid, rating=True), "rating"),
    (lambda cat, gid: cat.set_favorite(gid, tags="best"), "tags"),
    (lambda cat, gid: cat.set_favorite(gid, tags=[f"t{i}" for i in range(40)]), "tags"),
    (lambda cat, gid: cat.set_favorite(gid, tags=["x" * 100]), "tag"),
    (lambda cat, gid: cat.set_favorite(gid, feedback="x" * 5000), "feedback"),
    (lambda cat, gid: cat.set_favorite("../../etc/passwd"), "generation id"),
    (lambda cat, gid: cat.list(limit=0), "limit"),
    (lambda cat, gid: cat.list(offset=-1), "offset"),
    (lambda cat, gid: cat.favorites(min_rating=9), "rating"),
], ids=["rating-0", "rating-6", "rating-bool", "tags-str", "tags-many", "tag-long", "feedback-long", "bad-id",
        "limit", "offset", "min-rating"])
def test_bad_values_are_usage_errors(catalog: Catalog, output_dir: Path, call, message: str) -> None:
    gid = catalog.record_sidecar(keep_fake_output(output_dir, "v").sidecar).generation_id
    with pytest.raises(UsageError, match=message) as info:
        call(catalog, gid)
    assert exit_code_for(info.value) == 2


def test_a_file_that_is_not_a_sidecar_is_refused(catalog: Catalog, output_dir: Path) -> None:
    (output_dir / "notes.txt.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(MetadataNotFound, match="not a comfy-gen sidecar"):
        catalog.record_sidecar(output_dir / "notes.txt.json")
    with pytest.raises(MetadataNotFound, match="No sidecar"):
        catalog.record_sidecar(output_dir / "missing.png")


def test_an_overwritten_output_replaces_its_row(catalog: Catalog, output_dir: Path) -> None:
    old = catalog.record_sidecar(keep_fake_output(output_dir, "item", recipe="coast").sidecar)
    catalog.set_favorite(old.generation_id, rating=4)
    new = catalog.record_sidecar(keep_fake_output(output_dir, "item", recipe="coast", seed=2).sidecar)  # --force
    assert new.generation_id != old.generation_id and new.local_path == old.local_path
    assert catalog.get(old.generation_id) is None and catalog.count() == 1
    assert catalog.favorites() == []


def _legacy(kept, *, keep_top_level_id: bool) -> None:
    """Make a sidecar look like one written before comfy_gen.generation_id existed."""
    meta = json.loads(kept.sidecar.read_text())
    del meta["comfy_gen"]["generation_id"]
    if keep_top_level_id:
        meta["generation_id"] = str(uuid.uuid4())  # what older versions wrote (hyphenated)
    else:
        del meta["generation_id"]
    kept.sidecar.write_text(json.dumps(meta))


def test_rebuild_finds_the_same_rows_and_keeps_user_fields(db_url: str, output_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    kept = [
        keep_fake_output(output_dir, "new", recipe="coast", run_id="run1", categories=["portrait"], score=30.0,
                         status="passed"),
        keep_fake_output(output_dir, "adhoc1"),
        keep_fake_output(output_dir, "legacy-uuid", recipe="coast"),
        keep_fake_output(output_dir, "legacy-none", recipe="coast"),
    ]
    _legacy(kept[2], keep_top_level_id=True)
    _legacy(kept[3], keep_top_level_id=False)
    # Not sidecars: a run record and a stray JSON file.
    (output_dir / "coast" / "run1").mkdir(parents=True)
    (output_dir / "coast" / "run1" / "summary.json").write_text("{}")
    far = keep_fake_output(outside, "far")  # a CLI `-o` outside the output folder

    with Catalog(db_url, output_dir=output_dir) as cat:
        for k in (*kept, far):
            cat.record_sidecar(k.sidecar)
        recorded = rows(cat)
        fav_id = cat.record_sidecar(kept[0].sidecar).generation_id
        cat.set_favorite(fav_id, rating=5, feedback="keep", tags=["best"])
        cat.set_favorite(cat.record_sidecar(kept[1].sidecar).generation_id, rating=1)

        # Rebuilding the same catalog: same rows, favorites kept, the outside row kept too.
        assert cat.rebuild() == 5
        after = rows(cat)
        assert after.keys() == recorded.keys()
        assert after[fav_id]["rating"] == 5 and after[fav_id]["tags"] == ["best"]
        for gid, row in recorded.items():
            assert {k: v for k, v in after[gid].items() if k not in ("favorite", "rating", "feedback", "tags")} == \
                   {k: v for k, v in row.items() if k not in ("favorite", "rating", "feedback", "tags")}

        # An output deleted from disk leaves the index (with its favorite) on the next rebuild.
        kept[1].file.unlink()
        kept[1].sidecar.unlink()
        assert cat.rebuild() == 4
        assert cat.count() == 4 and cat.count_favorites() == 1

        # Emptied, the catalog is rebuilt from the folder with the same rows (ids included);
        # only the user's fields, which live nowhere else, are gone.
        expected = {gid: {**row, "favorite": False, "rating": None, "feedback": None, "tags": []}
                    for gid, row in rows(cat).items() if not row["local_path"].startswith(str(outside))}
        with cat._writer.begin() as conn:
            for table in ("favorites", "generation_categories", "generations"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        assert cat.count() == 0
        assert cat.rebuild() == 3
        assert rows(cat) == expected


def test_legacy_ids_are_stable_across_rebuilds(catalog: Catalog, output_dir: Path) -> None:
    with_uuid = keep_fake_output(output_dir, "u")
    without = keep_fake_output(output_dir, "n")
    _legacy(with_uuid, keep_top_level_id=True)
    _legacy(without, keep_top_level_id=False)
    top_level = json.loads(with_uuid.sidecar.read_text())["generation_id"]
    assert catalog.rebuild() == 2
    first = {g.local_path: g.generation_id for g in catalog.list()}
    assert first[str(with_uuid.file.resolve())] == uuid.UUID(top_level).hex
    # Path-derived ids depend on the path inside the output folder, not where the folder is.
    moved = output_dir.parent / "moved-output"
    shutil.copytree(output_dir, moved)
    with Catalog(catalog_url(catalog, output_dir), output_dir=moved) as other:
        assert other.rebuild(moved) == 2
        assert sorted(g.generation_id for g in other.list()) == sorted(first.values())


def catalog_url(catalog: Catalog, output_dir: Path) -> str:
    """A second SQLite file (the path-id check needs no server)."""
    return "sqlite:///" + (output_dir.parent / "state" / "second.sqlite").as_posix()
