"""Every expected failure has an HTTP status of its own: nothing new falls through to 500."""

from __future__ import annotations

import inspect

import pytest

import comfy_gen.errors as errors
from comfy_gen.api.errors import status_for

#: Raised only where no HTTP request is waiting (a batch's end), so 500 is right for them.
SERVER_SIDE_ONLY = {errors.ComfyGenError, errors.BatchFailed}

ERROR_CLASSES = sorted((c for c in vars(errors).values()
                        if inspect.isclass(c) and issubclass(c, errors.ComfyGenError)), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_each_error_class_maps_to_a_deliberate_status(cls: type[errors.ComfyGenError]) -> None:
    status = status_for(cls.__new__(cls))
    if cls in SERVER_SIDE_ONLY:
        assert status == 500
    else:
        assert 400 <= status < 600 and status != 500, f"{cls.__name__} falls through to 500"
    if errors.is_transient(cls.__new__(cls)):
        assert status in (503, 504), f"a transient {cls.__name__} must tell clients to retry"
