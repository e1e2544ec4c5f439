"""The supported surface: `comfy_gen.__all__` is sorted and every name resolves."""

from __future__ import annotations

import importlib

import pytest

import comfy_gen


def test_all_is_sorted_and_complete() -> None:
    assert comfy_gen.__all__ == sorted(comfy_gen.__all__)
    assert set(comfy_gen.__all__) == set(comfy_gen._EXPORTS)


@pytest.mark.parametrize("name", comfy_gen.__all__)
def test_every_exported_name_resolves_to_its_module(name: str) -> None:
    value = getattr(comfy_gen, name)
    module = importlib.import_module(comfy_gen._EXPORTS[name])
    assert getattr(module, name) is value


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        comfy_gen.no_such_name  # noqa: B018
