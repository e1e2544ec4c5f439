"""The soak test drives the flow like the flow tests do: share their fixtures."""

from tests.flows.conftest import emulator_factory, write_recipe  # noqa: F401 - pytest fixtures
