"""Paths typed at a local CLI are the user's own (docs/ARCHITECTURE.md, "Paths and trust")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from tests.conftest import REPO_ROOT
from tests.generate.helpers import chunks, run_cli

TINY = "tiny-sd15"


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside both the working directory and the output folder."""
    return tmp_path_factory.mktemp("elsewhere")


def _meta(image: Path) -> dict:
    return json.loads(chunks(image)["comfygen_metadata"])


def test_output_anywhere_the_user_can_write(gen_env: Emulator, tmp_path: Path, elsewhere: Path) -> None:
    target = elsewhere / "car.png"
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a red car", "-o", str(target))
    assert code == 0, err
    assert out.strip() == str(target) and target.is_file() and (elsewhere / "car.png.json").is_file()


def test_workflow_path_relative_to_the_current_directory(gen_env: Emulator, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rel").mkdir()
    mine = tmp_path / "rel" / "x.json"
    shutil.copyfile(REPO_ROOT / "workflows" / f"{TINY}.json", mine)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    code, _, err = run_cli("generate", "--workflow", "../rel/x.json", "-p", "a lamp", "-o", "lamp.png")
    assert code == 0, err
    # Outside the workflows folder the metadata names it relative to the image (no absolute local
    # path travels with a published image), so reproduce finds it from any working directory.
    assert _meta(tmp_path / "other" / "lamp.png")["workflow"]["name"] == "../rel/x.json"
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("reproduce", "other/lamp.png", "-o", "again.png")
    assert code == 0, err


def test_workflows_folder_path_works_from_any_directory(gen_env: Emulator, tmp_path: Path) -> None:
    # The seed's examples say `--workflow workflows/x.json`; there is no workflows/ under this cwd.
    assert not (tmp_path / "workflows").exists()
    code, _, err = run_cli("generate", "--workflow", f"workflows/{TINY}.json", "-p", "a boat", "-o", "b.png")
    assert code == 0, err
    assert _meta(tmp_path / "b.png")["workflow"]["name"] == TINY


def test_input_image_outside_the_working_directory(gen_env: Emulator, elsewhere: Path) -> None:
    from PIL import Image

    src = elsewhere / "photo.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(src)
    code, _, err = run_cli("generate", "-w", "sd15-img2img", "-p", "a watercolor", "-i", str(src), "-o", "w.png")
    assert code == 0, err


def test_metadata_show_outside_the_working_directory(gen_env: Emulator, elsewhere: Path) -> None:
    assert run_cli("generate", "-w", TINY, "-p", "a kite", "--seed", "9", "-o", str(elsewhere / "k.png"))[0] == 0
    code, out, err = run_cli("metadata", "show", str(elsewhere / "k.png"))
    assert code == 0 and "Seed: 9" in out, err


def test_root_generate_py_writes_to_the_users_path(gen_env: Emulator, tmp_path: Path, elsewhere: Path) -> None:
    target = elsewhere / "root.png"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "generate.py"), "--workflow", f"workflows/{TINY}.json",
                           "--prompt", "a tram", "--output", str(target)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert target.is_file()
