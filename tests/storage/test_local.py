"""The local store layout, atomic writes, deterministic keys and key confinement."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import StorageError, UsageError
from comfy_gen.storage import (LocalOnlyStorage, LocalStore, atomic_write_bytes, check_key,
                               content_type_for, get_storage, new_run_id, object_key, sidecar_key,
                               sidecar_path)
from tests.storage.helpers import make_png


def test_layout_paths(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    root = (tmp_path / "out").resolve()
    assert store.attempt_path("portraits", "run1", "abc123") == root / "portraits/run1/abc123.png"
    assert store.attempt_path("portraits", "run1", "abc123", attempt=1) == root / "portraits/run1/abc123.png"
    assert store.attempt_path(None, "run1", "abc123", attempt=3, ext="webp") == root / "adhoc/run1/abc123_a3.webp"
    assert store.item_path("portraits", "abc123") == root / "portraits/items/abc123.png"
    assert sidecar_path(root / "x.png") == root / "x.png.json"
    assert store.outbox_dir == root / ".outbox"


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", ".hidden", "a..b", "x" * 201])
def test_unsafe_names_refused(tmp_path: Path, bad: str) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(UsageError):
        store.item_path("recipe", bad)
    with pytest.raises(UsageError):
        store.run_dir("recipe", bad)


def test_kept_item_is_found_by_later_runs(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from comfy_gen.outputs import OutputContext, build_output_metadata, keep_output
    from comfy_gen.params import GenerationParams

    store = LocalStore(tmp_path)
    assert store.find_existing("demo", "item1") is None
    attempt = make_png(store.attempt_path("demo", new_run_id(), "item1", attempt=2))
    original = attempt.read_bytes()
    best = SimpleNamespace(prompt_id="p1", scores=None, passed=None, verdicts=[], files=[attempt], number=2)
    outcome = SimpleNamespace(best=best, attempts=[], max_attempts=2, strategy=None, status="unvalidated")
    context = OutputContext(workflow_name="tiny-sd15.json", params=GenerationParams(seed=1), job_key="j1:x",
                            recipe="demo", run_id="r1", item_id="item1", backend="default")
    kept = keep_output(attempt, store.item_path("demo", "item1"), key="demo/item1.png",
                       metadata=build_output_metadata(context, outcome))  # type: ignore[arg-type]
    final = kept.file
    assert final == store.item_path("demo", "item1")
    assert final.read_bytes()[:8] == original[:8] and len(final.read_bytes()) > len(original)  # + metadata
    assert sidecar_path(final).read_text().strip().startswith("{")
    assert not attempt.exists()  # the attempt was moved, not copied
    # a later run (new run id) finds the same stable file
    assert store.find_existing("demo", "item1") == final
    assert store.iter_items() == [final]
    assert store.iter_items("other") == []


def test_recipe_folder_may_be_a_relative_subfolder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.item_path("projects/coast", "i1") == tmp_path.resolve() / "projects/coast/items/i1.png"
    with pytest.raises(UsageError):
        store.recipe_dir("projects/../../etc")


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.bin"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_object_keys_are_deterministic() -> None:
    assert object_key("portraits", "abc123") == "portraits/abc123.png"
    assert object_key(None, "abc123", "webp", prefix="/team/") == "team/adhoc/abc123.webp"
    assert sidecar_key("portraits/abc123.png") == "portraits/abc123.png.json"
    # user-supplied names are made safe, never escape their folder
    assert object_key("portraits", "../x") == "portraits/x.png"
    assert object_key("my recipe", "my image") == "my_recipe/my_image.png"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs.png", "a/../../b", "a\\b", "", "a//b", "./a"])
def test_check_key_refuses_escapes(key: str) -> None:
    with pytest.raises(UsageError):
        check_key(key)


@pytest.mark.parametrize(("name", "expected"), [
    ("a.png", "image/png"), ("a.JPG", "image/jpeg"), ("a.jpeg", "image/jpeg"), ("a.webp", "image/webp"),
    ("a.gif", "image/gif"), ("a.mp4", "video/mp4"), ("a.webm", "video/webm"),
    ("a.png.json", "application/json"), ("a.bin", "application/octet-stream"), ("noext", "application/octet-stream"),
])
def test_content_types(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


def test_local_only_storage(tmp_path: Path) -> None:
    storage = get_storage(Settings(output_dir=tmp_path))
    assert isinstance(storage, LocalOnlyStorage) and storage.remote is False
    png = make_png(tmp_path / "x.png")
    stored = storage.put(png, "adhoc/x.png")
    assert stored.url == png.resolve().as_uri() and stored.skipped and stored.size == png.stat().st_size
    assert storage.list() == [] and storage.exists("adhoc/x.png") is False
    with pytest.raises(StorageError):
        storage.delete("adhoc/x.png")


def test_run_ids_sort_by_time() -> None:
    early = new_run_id(datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    late = new_run_id(datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert early.startswith("20240102-030405-") and early < late
