"""`comfy-gen generate --enhance-prompt` end to end: enhancer + emulator, metadata with both prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.config import reset_settings_cache
from comfy_gen.emulator import Emulator
from comfy_gen.metadata import validate_metadata
from comfy_gen.stack import free_port
from tests.enhance.conftest import ChatServer
from tests.generate.helpers import chunks, json_lines, run_cli

TINY = "tiny-sd15"
PROMPT = "a lighthouse on a cliff"


def _queued_prompt(image: Path) -> str:
    """The positive prompt of the graph ComfyUI ran (its embedded API graph)."""
    graph = json.loads(chunks(image)["prompt"])
    texts = [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]
    return texts[0]


def _history(emu: Emulator) -> int:
    return int(emu.stats()["history_size"])


def test_enhanced_prompt_renders_and_metadata_keeps_both(emu: Emulator, use_backend,
                                                        use_chat_server: ChatServer, tmp_path: Path) -> None:
    use_backend(emu.url)
    code, out, err = run_cli("generate", "-w", TINY, "-p", PROMPT, "--enhance-style", "cinematic",
                             "--seed", "3", "-o", "out.png", "--json-progress")
    assert code == 0, err
    enhanced = f"{PROMPT}, cinematic lighting, dramatic clouds, 35mm film still"
    assert _queued_prompt(tmp_path / "out.png") == enhanced
    meta = json.loads(chunks(tmp_path / "out.png")["comfygen_metadata"])
    assert meta["input"]["prompt"] == enhanced and meta["input"]["original_prompt"] == PROMPT
    assert meta["input"]["enhancement"] == {"backend": "http", "model": "tiny-chat", "style": "cinematic",
                                            "status": "enhanced"}
    validate_metadata(meta)
    assert json.loads((tmp_path / "out.png.json").read_text())["input"] == meta["input"]
    assert any(e.get("type") == "info" and "Enhanced prompt" in e.get("message", "") for e in json_lines(out))
    assert use_chat_server.chats == 1  # once per generation, not per attempt


def test_server_error_at_run_time_keeps_the_original_with_a_warning(
        emu: Emulator, use_backend, use_chat_server: ChatServer, tmp_path: Path) -> None:
    use_backend(emu.url)
    use_chat_server.mode = "error500"
    code, _, err = run_cli("generate", "-w", TINY, "-p", PROMPT, "--enhance-prompt", "-o", "kept.png")
    assert code == 0, err
    assert "Warning: prompt enhancement failed, the original prompt is kept" in err and "HTTP 500" in err
    assert _queued_prompt(tmp_path / "kept.png") == PROMPT
    meta = json.loads((tmp_path / "kept.png.json").read_text())
    assert meta["input"]["prompt"] == meta["input"]["original_prompt"] == PROMPT
    assert meta["input"]["enhancement"]["status"] == "kept_original"
    validate_metadata(meta)


def test_unreachable_enhancer_exits_2_before_queueing(emu: Emulator, use_backend, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_ENHANCE_BACKEND", "http")
    monkeypatch.setenv("COMFY_GEN_ENHANCE_URL", f"http://127.0.0.1:{free_port()}/v1")
    reset_settings_cache()
    before = _history(emu)
    code, _, err = run_cli("generate", "-w", TINY, "-p", PROMPT, "--enhance-prompt", "-o", "never.png")
    assert code == 2, err
    assert err.startswith("Error:") and "COMFY_GEN_ENHANCE_URL" in err and "Traceback" not in err
    assert _history(emu) == before and not (tmp_path / "never.png").exists()


def test_unknown_style_exits_2_listing_the_styles(emu: Emulator, use_backend) -> None:
    use_backend(emu.url)
    before = _history(emu)
    code, _, err = run_cli("generate", "-w", TINY, "-p", PROMPT, "--enhance-style", "baroque")
    assert code == 2 and "Unknown enhancement style 'baroque'" in err and "cinematic" in err
    assert _history(emu) == before


def test_local_backend_through_the_cli(emu: Emulator, use_backend, use_tiny_chat: Path, tmp_path: Path) -> None:
    use_backend(emu.url)
    code, _, err = run_cli("generate", "-w", TINY, "-p", PROMPT, "--enhance-prompt", "-o", "local.png")
    assert code == 0, err
    meta = json.loads((tmp_path / "local.png.json").read_text())
    assert meta["input"]["original_prompt"] == PROMPT
    assert meta["input"]["enhancement"] == {"backend": "local", "model": str(use_tiny_chat),
                                            "style": "photographic", "status": "enhanced"}
    assert meta["input"]["prompt"] != PROMPT and _queued_prompt(tmp_path / "local.png") == meta["input"]["prompt"]


def test_prompt_enhance_retries_ask_the_enhancer_for_more_detail(
        emu: Emulator, use_backend, use_chat_server: ChatServer, tiny_clip_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    use_backend(emu.url)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("COMFY_GEN_CLIP_DEVICE", "cpu")
    reset_settings_cache()
    code, _, err = run_cli("generate", "-w", TINY, "-p", PROMPT, "--enhance-prompt", "--validate",
                           "--positive-threshold", "100", "--retry-strategy", "prompt_enhance",
                           "--max-attempts", "2", "-o", "retry.png")
    assert code == 3, err  # nothing reaches 100: the best attempt is kept
    meta = json.loads((tmp_path / "retry.png.json").read_text())
    prompts = [a["params"]["prompt"] for a in meta["refinement"]["attempts"]]
    assert prompts == [f"{PROMPT}, cinematic lighting, dramatic clouds, 35mm film still",
                       f"{PROMPT}, highly detailed textures, volumetric light, intricate composition"]
    assert use_chat_server.chats == 2
    assert meta["input"]["original_prompt"] == PROMPT


def test_root_generate_script_has_the_flags(emu: Emulator, use_backend, use_chat_server: ChatServer,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT))
    try:
        import generate as root_script
    finally:
        sys.path.remove(str(REPO_ROOT))
    root_script._help()
    shown = capsys.readouterr().out
    assert "--enhance-prompt" in shown and "--enhance-style STYLE" in shown
    use_backend(emu.url)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "generate.py"), "--workflow", TINY, "--prompt", PROMPT,
                           "--enhance-prompt", "--output", "root.png"], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "root.png.json").read_text())
    assert meta["input"]["original_prompt"] == PROMPT and meta["input"]["enhancement"]["status"] == "enhanced"


def test_api_body_maps_onto_the_service_request() -> None:
    from comfy_gen.api.routes.generate import build_request
    from comfy_gen.api.schemas import GenerateBody
    from comfy_gen.errors import UsageError

    def request(**enhance: object):  # type: ignore[no-untyped-def]
        body = GenerateBody(prompt=PROMPT, workflow=TINY, enhance=enhance)
        return build_request(body, None, "general")[0]  # type: ignore[arg-type]

    assert request().enhance.enabled is False
    assert request(style="minimal").enhance.to_dict() == {"enabled": True, "style": "minimal"}
    assert request(enabled=True).enhance.to_dict() == {"enabled": True, "style": None}
    with pytest.raises(UsageError, match="known styles"):
        request(style="baroque")
