"""Shared test set-up: soak tests (marked `slow`) run only when SANDZMQ_SOAK is set."""
from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SANDZMQ_SOAK"):
        return
    skip = pytest.mark.skip(reason="soak test: set SANDZMQ_SOAK=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
