"""Pure protocol parsing, checked against real recorded ComfyUI traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.comfyui import _protocol
from comfy_gen.comfyui import events as ev
from comfy_gen.errors import PromptRejected
from tests.conftest import RECORDINGS

CAPTURES = RECORDINGS / "captures"
WS_CAPTURES = sorted(CAPTURES.glob("*_ws_*.json"))


def _load(name: str) -> dict:
    return json.loads((CAPTURES / name).read_text())


def _body(name: str):
    return _load(name)["response"]["body"]


@pytest.mark.parametrize("path", WS_CAPTURES, ids=lambda p: p.stem)
def test_every_recorded_ws_text_message_parses_to_its_event_type(path: Path) -> None:
    capture = json.loads(path.read_text())
    texts = [m["msg"] for m in capture["messages"] if m["kind"] == "text"]
    assert texts
    for msg in texts:
        event = _protocol.parse_message(msg)
        expected = ev.EVENT_TYPES.get(msg["type"])
        if expected is None:  # progress_state, feature_flags: not modelled
            assert event is None, msg["type"]
            continue
        assert type(event) is expected
        assert event.type == msg["type"]
        if msg["type"] != "status":
            assert event.prompt_id == msg["data"].get("prompt_id")
        json.dumps(event.to_dict())  # JSON-safe


def test_success_sequence_fields() -> None:
    messages = [m["msg"] for m in _load("190_ws_single_job_cold_then_cached_then_new_seed.json")["messages"]
                if m["kind"] == "text"]
    events = [e for e in map(_protocol.parse_message, messages) if e is not None]
    first_pid = "254297f9-c22c-46cf-9d39-d999c2cc76d0"
    mine = [e for e in events if e.prompt_id == first_pid]
    progress = [e for e in mine if isinstance(e, ev.Progress)]
    assert [(p.step, p.max, p.node) for p in progress] == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]
    executed = [e for e in mine if isinstance(e, ev.Executed)]
    assert executed[0].node == "9"
    assert executed[0].output["images"][0]["filename"] == "txt2img_00001_.png"
    done = [e for e in mine if isinstance(e, ev.Executing) and e.is_done]
    assert len(done) == 1 and mine[-1] is done[0]  # executing{node:null} comes last
    status = events[0]
    assert isinstance(status, ev.Status) and status.sid and status.queue_remaining == 0
    cached = [e for e in events if isinstance(e, ev.ExecutionCached) and e.nodes]
    assert cached[0].nodes == ("3", "4", "5", "6", "7", "8", "9")


def test_error_and_interrupt_payloads() -> None:
    err = next(e for m in _load("193_ws_runtime_error.json")["messages"] if m["kind"] == "text"
               for e in [_protocol.parse_message(m["msg"])] if isinstance(e, ev.ExecutionError))
    assert (err.node_id, err.node_type, err.exception_type) == ("9", "SaveImage", "Exception")
    assert "outside the output folder" in err.exception_message and err.traceback
    interrupted = [e for m in _load("192_ws_interrupt_and_queue_ops.json")["messages"] if m["kind"] == "text"
                   for e in [_protocol.parse_message(m["msg"])] if isinstance(e, ev.ExecutionInterrupted)]
    assert [(i.node_id, i.node_type) for i in interrupted] == [("3", "KSampler")] * 2


def test_reconnect_replay_executing_has_no_prompt_id() -> None:
    msgs = [m["msg"] for m in _load("282_ws_reconnect_part2_after_reconnect_same_clientId.json")["messages"]]
    replay = _protocol.parse_message(msgs[1])
    assert isinstance(replay, ev.Executing)
    assert replay.node == "3" and replay.prompt_id is None and not replay.is_done


@pytest.mark.parametrize("bad", [None, [], {"type": "status"}, {"type": 3, "data": {}}, {"data": {}}])
def test_malformed_messages_are_ignored(bad) -> None:
    assert _protocol.parse_message(bad) is None


def test_text_frame_garbage_is_none() -> None:
    assert _protocol.parse_text_frame("not json{") is None
    assert isinstance(_protocol.parse_text_frame('{"type":"execution_start","data":{"prompt_id":"p"}}'),
                      ev.ExecutionStart)


@pytest.mark.parametrize("path", sorted((CAPTURES / "files").glob("ws_binary_*.bin")), ids=lambda p: p.stem)
def test_recorded_binary_frames_parse(path: Path) -> None:
    frame = path.read_bytes()
    preview = _protocol.parse_binary_frame(frame)
    assert isinstance(preview, ev.Preview)
    assert preview.mime == "image/jpeg" and preview.image[:2] == b"\xff\xd8"
    if "f7feabcc" in path.name:  # feature-flag client: event 4 with metadata
        assert preview.event == 4
        assert preview.prompt_id == "fc40b1c6-5d61-4436-80d8-b7feaeb81245"
        assert preview.node_id == "3"
        assert len(preview.image) == len(frame) - 8 - 166
    else:  # legacy client: event 1, no prompt id
        assert preview.event == 1 and preview.prompt_id is None
        assert len(preview.image) == len(frame) - 8
    assert preview.to_dict()["image_bytes"] == len(preview.image)


@pytest.mark.parametrize("frame", [
    b"", b"\x00\x00\x00\x01", (3).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"9hello",
    (4).to_bytes(4, "big") + (99).to_bytes(4, "big") + b"{}", (4).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"nope",
    (9).to_bytes(4, "big") + b"\x00" * 8,
], ids=["empty", "short", "text-event", "bad-length", "bad-json", "unknown-event"])
def test_other_binary_frames_are_none(frame: bytes) -> None:
    assert _protocol.parse_binary_frame(frame) is None


def test_progress_clock_estimates_eta() -> None:
    clock = _protocol.ProgressClock()
    clock.note(ev.Executing(prompt_id="p", node="3"), now=100.0)
    first = clock.note(ev.Progress(prompt_id="p", node="3", step=1, max=4), now=102.0)
    assert first.eta_seconds == pytest.approx(6.0)
    later = clock.note(ev.Progress(prompt_id="p", node="3", step=3, max=4), now=106.0)
    assert later.eta_seconds == pytest.approx(2.0)
    # joined mid-node: the clock starts at the first progress seen
    other = clock.note(ev.Progress(prompt_id="q", node="3", step=2, max=4), now=50.0)
    assert other.eta_seconds is None


# --- POST /prompt errors ---------------------------------------------------------

INVALID = {
    "160_post_prompt_invalid_missing_model.json": ("prompt_outputs_failed_validation", "4", "value_not_in_list"),
    "161_post_prompt_invalid_bad_node_class.json": ("invalid_prompt", "12", "invalid_prompt"),
    "162_post_prompt_invalid_wrong_input_type_value.json": ("prompt_outputs_failed_validation", "3", "invalid_input_type"),
    "163_post_prompt_invalid_wrong_link_type.json": ("prompt_outputs_failed_validation", "3", "return_type_mismatch"),
    "164_post_prompt_invalid_value_below_min.json": ("prompt_outputs_failed_validation", "3", "value_smaller_than_min"),
    "165_post_prompt_invalid_missing_required_input.json": ("prompt_outputs_failed_validation", "3", "required_input_missing"),
    "166_post_prompt_invalid_link_to_missing_node.json": ("prompt_outputs_failed_validation", "8", "exception_during_inner_validation"),
    "167_post_prompt_invalid_no_output_node.json": ("prompt_no_outputs", None, None),
    "168_post_prompt_invalid_bad_combo_value.json": ("prompt_outputs_failed_validation", "3", "value_not_in_list"),
    "169_post_prompt_no_prompt_key.json": ("no_prompt", None, None),
    "172_post_prompt_node_missing_class_type.json": ("invalid_prompt", "1", "invalid_prompt"),
    "313_post_prompt_loadimage_missing_file.json": ("prompt_outputs_failed_validation", "10", "custom_validation_failed"),
}


@pytest.mark.parametrize("name", sorted(INVALID), ids=lambda n: n.split(".")[0])
def test_400_bodies_become_prompt_rejected(name: str) -> None:
    capture = _load(name)
    assert capture["response"]["status"] == 400
    exc = _protocol.prompt_rejection(capture["response"]["body"], status=400, prompt_id="pid")
    error_type, node_id, node_error_type = INVALID[name]
    assert isinstance(exc, PromptRejected) and not exc.partial
    assert exc.error_type == error_type
    if node_id is None:
        assert exc.node_errors == []
    else:
        first = exc.node_errors[0]
        assert (first["node_id"], first["type"]) == (node_id, node_error_type)
        assert set(first) == {"node_id", "class_type", "type", "message", "details", "input_name",
                              "received_value", "allowed"}
    assert str(exc)  # renders without error
    json.dumps(exc.to_dict())


def test_allowed_values_are_recovered() -> None:
    exc = _protocol.prompt_rejection(_body("160_post_prompt_invalid_missing_model.json"), status=400, prompt_id="p")
    err = exc.node_errors[0]
    assert err["allowed"] == ["tiny_sd15.safetensors"]
    assert (err["input_name"], err["received_value"]) == ("ckpt_name", "does_not_exist.safetensors")
    assert err["class_type"] == "CheckpointLoaderSimple"
    # details-only form, and the unrecoverable "(list of length N)"
    parsed = _protocol.flatten_node_errors({"4": {"class_type": "X", "errors": [{
        "type": "value_not_in_list", "message": "Value not in list",
        "details": "vae_name: 'a' not in ['b.safetensors', 'pixel_space']", "extra_info": {}}]}})
    assert parsed[0]["allowed"] == ["b.safetensors", "pixel_space"]
    long = _protocol.prompt_rejection(_body("168_post_prompt_invalid_bad_combo_value.json"), status=400, prompt_id="p")
    assert long.node_errors[0]["allowed"] is None
    below = _protocol.prompt_rejection(_body("164_post_prompt_invalid_value_below_min.json"), status=400, prompt_id="p")
    assert below.node_errors[0]["allowed"] is None and below.node_errors[0]["received_value"] == 0


def test_bad_class_names_the_node() -> None:
    exc = _protocol.prompt_rejection(_body("161_post_prompt_invalid_bad_node_class.json"), status=400, prompt_id="p")
    assert exc.node_errors[0]["class_type"] == "NoSuchNodeClass"
    assert "NoSuchNodeClass" in str(exc)


def test_partial_acceptance() -> None:
    body = _body("187_post_prompt_partially_invalid_two_outputs.json")
    exc = _protocol.prompt_rejection(body, status=200, prompt_id=body["prompt_id"])
    assert exc.partial and exc.prompt_id == body["prompt_id"]
    assert exc.node_errors[0]["node_id"] == "20" and exc.node_errors[0]["type"] == "value_smaller_than_min"


def test_combo_choices_both_forms() -> None:
    info = json.loads((CAPTURES / "files" / "object_info_full.json").read_text())
    assert _protocol.combo_choices(info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]) == [
        "tiny_sd15.safetensors"]
    assert _protocol.combo_choices(info["LatentCut"]["input"]["required"]["dim"]) == ["x", "y", "t"]
    assert _protocol.combo_choices(info["UpscaleModelLoader"]["input"]["required"]["model_name"]) == []
    assert _protocol.combo_choices(["INT", {"min": 0}]) is None
    assert _protocol.combo_choices(None) is None


# --- queue and history ---------------------------------------------------------


def test_parse_queue_running_and_pending() -> None:
    state = _protocol.parse_queue(_body("123_get_queue_running_and_pending.json"))
    assert [i.number for i in state.running] == [3]
    assert [i.number for i in state.pending] == [4, 5]
    assert state.running[0].client_id == "3eb9bbf8-0038-4380-a1c6-02cf9f1d9c85"
    assert state.find("756a8a3d-4f43-4b28-a79f-32e8af691290") == "pending"
    assert state.find("a822d485-14b2-4f0a-b575-96451dca9f49") == "running"
    assert state.find("nope") is None
    assert _protocol.parse_queue(_body("016_get_queue_empty.json")).running == []


def _entry(name: str) -> dict:
    body = _body(name)
    return next(iter(body.values()))


def test_history_success_outputs_and_cache_flag() -> None:
    cold = _entry("103_get_history_by_id_after_success.json")
    assert _protocol.history_outcome(cold)[0] == "success"
    outputs = _protocol.outputs_from_history(cold)
    assert [(o.node_id, o.filename, o.type, o.kind) for o in outputs] == [
        ("9", "txt2img_00001_.png", "output", "images")]
    assert not _protocol.is_cached(cold)
    assert _protocol.is_cached(_entry("111_get_history_cached_run.json"))


def test_history_batch_with_preview_outputs() -> None:
    outputs = _protocol.outputs_from_history(_entry("227_get_history_batch2_preview.json"))
    kinds = {(o.node_id, o.type) for o in outputs}
    assert kinds == {("9", "output"), ("11", "temp")}
    assert len(outputs) == 4
    assert all(o.subfolder == "batch" for o in outputs if o.node_id == "9")


def test_history_error_and_interrupt_are_told_apart() -> None:
    outcome, data = _protocol.history_outcome(_entry("151_get_history_after_runtime_error.json"))
    assert outcome == "error" and data["node_type"] == "SaveImage"
    outcome, data = _protocol.history_outcome(_entry("144_get_history_interrupted.json"))
    assert outcome == "interrupted" and data["node_id"] == "3"


def test_gifs_and_videos_are_outputs() -> None:
    entry = {"outputs": {"5": {"gifs": [{"filename": "a.webp", "subfolder": "", "type": "output"}],
                               "videos": [{"filename": "b.mp4", "type": "temp"}], "text": ["x"]}}}
    assert [(o.kind, o.filename) for o in _protocol.outputs_from_history(entry)] == [
        ("gifs", "a.webp"), ("videos", "b.mp4")]


@pytest.mark.parametrize("status,state", [("pending", "pending"), ("in_progress", "running"),
                                          ("completed", "done"), ("failed", "done"), ("weird", None)])
def test_jobs_api_state(status: str, state: str | None) -> None:
    assert _protocol.jobs_api_state({"status": status}) == state


def test_malformed_known_messages_parse_to_none() -> None:
    assert _protocol.parse_text_frame('{"type": "status", "data": {"status": [1]}}') is None
