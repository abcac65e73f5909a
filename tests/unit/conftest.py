"""Fixtures shared by the unit tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import REPO
from tests.helpers.handler import StandInContext


@pytest.fixture(scope="module")
def handler(model_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("resnet50_handler", REPO / "handlers" / "resnet50_handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.handle(None, StandInContext(model_dir)) is None  # initialisation call
    return module
