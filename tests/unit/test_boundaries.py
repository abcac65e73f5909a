"""DESIGN.md §2 boundaries, checked on the source: one module per external system, torch only where needed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

SRC = REPO / "src" / "resnet_serving"

# external top-level module → the package paths (relative to src/resnet_serving) allowed to import it
ALLOWED: dict[str, tuple[str, ...]] = {
    "boto3": ("store/", "sagemaker/"),
    "botocore": ("store/", "sagemaker/"),
    "kopf": ("controller/",),
    "kubernetes": ("controller/",),
    # torch-free everywhere else keeps the CLI, store and operator light (the operator image has no torch)
    "torch": ("inference/", "artifact/", "bench/"),
    "torchvision": ("inference/", "artifact/", "bench/"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_external_systems_are_imported_only_by_their_module(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    for name in _imports(path) & set(ALLOWED):
        assert rel.startswith(ALLOWED[name]), f"{rel} imports {name}; only {ALLOWED[name]} may (DESIGN.md §2)"


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("import boto3\nfrom torch import nn\n")
    assert _imports(bad) == {"boto3", "torch"}


def test_handler_holds_no_logic() -> None:
    handler = REPO / "handlers" / "resnet50_handler.py"
    imports = _imports(handler)
    assert "torch" not in imports and "PIL" not in imports, "the handler must delegate to resnet_serving"
    assert len(handler.read_text().splitlines()) < 100
