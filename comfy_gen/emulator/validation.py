"""Prompt validation with ComfyUI's semantics (execution.py ``validate_prompt``).

The error dictionaries, their order and their quirks follow the recorded
responses (captures 160-174, 187, 313): errors are reported on the node that
owns the bad input, a link to a missing node surfaces as
``exception_during_inner_validation`` on the *linking* node's parent, and a
prompt with at least one valid output is accepted (200) with ``node_errors``.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_gen.emulator.catalog import IMAGE_INPUT_NODES, Catalog, input_images

Error = dict[str, Any]


@dataclass
class Verdict:
    """What POST /prompt answers: ok, the top-level error, outputs to run, node errors."""

    ok: bool
    error: Error | None
    outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)


def _top_error(kind: str, message: str, details: str = "") -> Error:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def validate_node_input(received: Any, expected: Any) -> bool:
    """ComfyUI's type check: equal, wildcard ``*``, or overlapping ``A,B`` unions."""
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


class Validator:
    """Validates one prompt against a catalog and the input folder."""

    def __init__(self, catalog: Catalog, input_dir: Path) -> None:
        self.catalog = catalog
        self.input_dir = input_dir
        self.images = input_images(input_dir)
        self.validated: dict[str, tuple[bool, list[Error], str]] = {}

    def validate_prompt(self, prompt: Any, partial_targets: list[str] | None = None) -> Verdict:
        outputs: list[str] = []
        # A list prompt iterates as no nodes at all -> "no outputs" (captures/173).
        nodes = prompt if isinstance(prompt, dict) else {}
        for node_id, node in nodes.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return Verdict(False, _top_error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'"))
            class_type = node["class_type"]
            if not self.catalog.has(class_type):
                return Verdict(False, _top_error(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'"))
            if self.catalog.is_output(class_type):
                if partial_targets is None or node_id in partial_targets:
                    outputs.append(node_id)
        if not outputs:
            return Verdict(False, _top_error("prompt_no_outputs", "Prompt has no outputs"))

        good: list[str] = []
        node_errors: dict[str, Any] = {}
        for out_id in outputs:
            try:
                valid, reasons, _ = self.validate_inputs(nodes, out_id)
            except Exception as exc:  # noqa: BLE001 - mirrors ComfyUI's catch-all
                valid = False
                reasons = [{
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(exc),
                    "extra_info": {"exception_type": _type_name(exc),
                                   "traceback": traceback.format_tb(sys.exc_info()[2])},
                }]
                self.validated[out_id] = (False, reasons, out_id)
            if valid:
                good.append(out_id)
                continue
            # Every node that failed with reasons so far lists this output as
            # dependent, even nodes of an unrelated branch (ComfyUI quirk).
            for node_id, (ok, node_reasons, _) in self.validated.items():
                if ok or not node_reasons:
                    continue
                entry = node_errors.setdefault(node_id, {
                    "errors": node_reasons, "dependent_outputs": [],
                    "class_type": nodes[node_id]["class_type"],
                })
                entry["dependent_outputs"].append(out_id)
        if not good:
            error = _top_error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
            return Verdict(False, error, [], node_errors)
        return Verdict(True, None, good, node_errors)

    def validate_inputs(self, prompt: dict[str, Any], node_id: str) -> tuple[bool, list[Error], str]:
        if node_id in self.validated:
            return self.validated[node_id]
        node = prompt[node_id]
        inputs = node.setdefault("inputs", {})
        class_type = node["class_type"]
        spec = self.catalog.input_spec(class_type, self.images)
        custom = {"image"} if class_type in IMAGE_INPUT_NODES else set()
        errors: list[Error] = []
        valid = True
        for category in ("required", "optional"):
            for name, info in spec.get(category, {}).items():
                input_type = info[0]
                extra = info[1] if len(info) > 1 else {}
                if name not in inputs:
                    if category == "required":
                        errors.append({"type": "required_input_missing",
                                       "message": "Required input is missing",
                                       "details": name, "extra_info": {"input_name": name}})
                    continue
                value = inputs[name]
                if isinstance(value, list):
                    ok = self._check_link(prompt, name, value, info, errors)
                    valid = valid and ok
                    continue
                error = _check_value(name, value, input_type, extra, info, inputs, name in custom)
                if error is not None:
                    errors.append(error)
        for name in custom:
            if name in inputs and not isinstance(inputs[name], list):
                problem = self._check_image_file(inputs[name])
                if problem is not None:
                    errors.append({"type": "custom_validation_failed",
                                   "message": "Custom validation failed for node",
                                   "details": f"{name} - {problem}",
                                   "extra_info": {"input_name": name}})
        result = (not errors and valid, errors, node_id)
        self.validated[node_id] = result
        return result

    def _check_link(self, prompt: dict[str, Any], name: str, value: list[Any], info: list[Any],
                    errors: list[Error]) -> bool:
        if len(value) != 2:
            errors.append({"type": "bad_linked_input",
                           "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                           "details": name,
                           "extra_info": {"input_name": name, "input_config": info, "received_value": value}})
            return True
        source_id = value[0]
        # A KeyError here (link to a missing node) propagates to the caller's
        # try block on purpose: ComfyUI reports it one level up (captures/166).
        source_class = prompt[source_id]["class_type"]
        received = self.catalog.return_types(source_class)[value[1]]
        if not validate_node_input(received, info[0]):
            errors.append({"type": "return_type_mismatch",
                           "message": "Return type mismatch between linked nodes",
                           "details": f"{name}, received_type({received}) mismatch input_type({info[0]})",
                           "extra_info": {"input_name": name, "input_config": info,
                                          "received_type": received, "linked_node": value}})
            return True
        try:
            ok, _, _ = self.validate_inputs(prompt, source_id)
        except Exception as exc:  # noqa: BLE001 - mirrors ComfyUI
            self.validated[source_id] = (False, [{
                "type": "exception_during_inner_validation",
                "message": "Exception when validating inner node",
                "details": str(exc),
                "extra_info": {"input_name": name, "input_config": info,
                               "exception_message": str(exc), "exception_type": _type_name(exc),
                               "traceback": traceback.format_tb(sys.exc_info()[2]),
                               "linked_node": value},
            }], source_id)
            return False
        return ok

    def _check_image_file(self, value: Any) -> str | None:
        name = str(value)
        if name.endswith("]") and " [" in name:  # annotated "x.png [input]"
            name = name.rsplit(" [", 1)[0]
        path = (self.input_dir / name).resolve()
        if not path.is_relative_to(self.input_dir.resolve()) or not path.is_file():
            return f"Invalid image file: {value}"
        return None


def _check_value(name: str, value: Any, input_type: Any, extra: dict[str, Any], info: list[Any],
                 inputs: dict[str, Any], custom: bool) -> Error | None:
    if isinstance(value, dict) and "__value__" in value:
        value = inputs[name] = value["__value__"]
    try:
        converters = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        if isinstance(input_type, str) and input_type in converters:
            value = inputs[name] = converters[input_type](value)
    except Exception as exc:  # noqa: BLE001 - int("many") etc.
        return {"type": "invalid_input_type",
                "message": f"Failed to convert an input value to a {input_type} value",
                "details": f"{name}, {value}, {exc}",
                "extra_info": {"input_name": name, "input_config": info, "received_value": value,
                               "exception_message": str(exc)}}
    if custom:  # validated by the node itself (VALIDATE_INPUTS)
        return None
    if "min" in extra and value < extra["min"]:
        return {"type": "value_smaller_than_min",
                "message": f"Value {value} smaller than min of {extra['min']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": value}}
    if "max" in extra and value > extra["max"]:
        return {"type": "value_bigger_than_max",
                "message": f"Value {value} bigger than max of {extra['max']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": value}}
    if isinstance(input_type, list) or input_type == "COMBO":
        options = input_type if isinstance(input_type, list) else extra.get("options", [])
        if value not in options:
            # Long lists are not echoed back (captures/168).
            config: Any = info
            listing = str(options)
            if len(options) > 20:
                listing, config = f"(list of length {len(options)})", None
            return {"type": "value_not_in_list", "message": "Value not in list",
                    "details": f"{name}: '{value}' not in {listing}",
                    "extra_info": {"input_name": name, "input_config": config, "received_value": value}}
    return None


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module == "builtins" else f"{module}.{name}"
