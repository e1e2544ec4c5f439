"""Storage options that were accepted and then ignored or misread (issue #11).

``--public-list`` took read away, ``images delete`` on a prefix said "Deleted"
for nothing, an outbox entry whose file was gone was retried forever, a
delayed upload never reached the sidecar, ``output.prefix`` was ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from comfy_gen.cli import main
from comfy_gen.outputs import KeptOutput, OutputContext, object_key_for, publish_output
from comfy_gen.params import GenerationParams
from comfy_gen.storage import Outbox
from comfy_gen.storage.outbox import storage_target
from comfy_gen.storage.s3 import S3Storage
from tests.fixtures.s3 import SeaweedServer
from tests.storage.helpers import make_png


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_public_list_adds_listing_and_keeps_read(s3_env, capsys, tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_env)
    url = storage.put(make_png(tmp_path / "p.png"), "p.png").url
    assert run(["bucket", "policy", "--public-read"], capsys)[0] == 0
    code, out, _ = run(["bucket", "policy", "--public-list", "--json"], capsys)
    actions = sorted(a for st in json.loads(out)["Statement"] for a in st["Action"])
    assert code == 0 and actions == ["s3:GetObject", "s3:ListBucket"]
    assert httpx.get(url).status_code == 200  # links still work
    code, out, _ = run(["bucket", "policy"], capsys)
    assert "anonymous read" in out and "anonymous listing" in out
    assert run(["bucket", "policy", "--private"], capsys)[0] == 0
    assert httpx.get(url).status_code == 403


def test_images_delete_on_a_prefix_is_an_error_and_prefix_mode_deletes_all(s3_env, capsys,
                                                                           tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_env)
    png = make_png(tmp_path / "a.png")
    for key in ("run/a.png", "run/a.png.json", "run/b.png", "other/c.png"):
        storage.put(png, key)
    for key in ("run", "run/"):
        code, out, err = run(["images", "delete", key], capsys)
        assert code == 2 and "is a prefix" in err and "--prefix" in err and "Deleted" not in out, err
    assert len(storage.list("run/")) == 3
    code, _, err = run(["images", "delete", "--prefix", "run"], capsys)
    assert code == 2 and "must end with '/'" in err
    code, _, err = run(["images", "delete", "--prefix", "none/"], capsys)
    assert code == 2 and "No objects under 'none/'" in err
    code, out, err = run(["images", "delete", "--prefix", "run/"], capsys)
    assert code == 0 and out.count("Deleted ") == 3 and "3 object(s) deleted" in err
    assert [o.key for o in storage.list()] == ["other/c.png"]


def _kept_with_sidecar(folder: Path, name: str) -> Path:
    image = make_png(folder / f"{name}.png")
    image.with_name(f"{name}.png.json").write_text(json.dumps(
        {"storage": {"url": None, "key": None}, "comfy_gen": {"result": {"url": None, "upload": "queued"}}}))
    return image


def test_outbox_sync_records_the_url_in_the_local_sidecar_then_uploads_it(s3_env, tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_env)
    box = Outbox.from_settings(s3_env)
    image = _kept_with_sidecar(tmp_path, "late")
    target = storage_target(storage)
    box.add(image.with_name("late.png.json"), "r/late.png.json", target=target)  # queued first: sorted before the image
    box.add(image, "r/late.png", target=target)
    gone = make_png(tmp_path / "gone.png")
    box.add(gone, "r/gone.png", target=target)
    gone.unlink()
    report = box.sync(storage)
    assert sorted(report.uploaded) == ["r/late.png", "r/late.png.json"] and report.dropped == ["r/gone.png"]
    assert report.remaining == 0 and box.count() == 0
    local = json.loads(image.with_name("late.png.json").read_text())
    assert local["storage"] == {"url": storage.url_for("r/late.png"), "key": "r/late.png"}
    assert local["comfy_gen"]["result"]["upload"] == "uploaded"
    # the stored sidecar went up after the local one learnt the URL
    remote = storage._client.get_object(storage.bucket, "r/late.png.json").read()
    assert json.loads(remote)["storage"]["url"] == storage.url_for("r/late.png")


def test_publishing_a_cached_item_later_updates_its_sidecar(s3_settings, tmp_path: Path) -> None:
    storage = S3Storage.from_settings(s3_settings)
    image = _kept_with_sidecar(tmp_path, "cached")
    published = publish_output(KeptOutput(file=image, key="r/cached.png"), storage, None)
    assert published.state == "uploaded"
    assert json.loads(image.with_name("cached.png.json").read_text())["storage"]["url"] == published.url


def test_outbox_drops_a_vanished_file_with_a_warning(s3_server: SeaweedServer, s3_storage: S3Storage,
                                                     tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "box")
    box.add(make_png(tmp_path / "x.png"), "x.png", target=storage_target(s3_storage))
    (tmp_path / "x.png").unlink()
    assert box.sync(s3_storage).dropped == ["x.png"]
    assert "its local file" in caplog.text and box.count() == 0
    assert box.sync(s3_storage).to_dict() == {"uploaded": [], "failed": {}, "remaining": 0, "orphaned": {},
                                              "dropped": []}


def test_output_prefix_is_the_first_part_of_item_keys() -> None:
    base = dict(workflow_name="w", params=GenerationParams(prompt="p"), recipe="coast", item_id="abc")
    assert object_key_for(OutputContext(**base), Path("x.png")) == "coast/abc.png"
    assert object_key_for(OutputContext(**base, key_prefix="shared"), Path("x.png")) == "shared/abc.png"
