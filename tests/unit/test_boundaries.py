"""The boundaries of docs/architecture.md, checked on the source: one module per external system."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SRC = REPO / "src" / "resnet_serving"

# external top-level module → the package paths (relative to src/resnet_serving) allowed to import it
ALLOWED: dict[str, tuple[str, ...]] = {
    "boto3": ("store/", "sagemaker/"),
    "botocore": ("store/", "sagemaker/"),
    "kopf": ("controller/",),
    "kubernetes": ("controller/",),
    # torch-free everywhere else keeps the CLI, store and operator light (the operator image has no torch)
    "torch": ("inference/", "archiver.py", "bench/"),
    "torchvision": ("inference/", "archiver.py", "bench/"),
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
        assert rel.startswith(ALLOWED[name]), f"{rel} imports {name}; only {ALLOWED[name]} may (docs/architecture.md)"


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("import boto3\nfrom torch import nn\n")
    assert _imports(bad) == {"boto3", "torch"}


def test_handler_holds_no_logic() -> None:
    handler = REPO / "handlers" / "resnet50_handler.py"
    imports = _imports(handler)
    assert "torch" not in imports and "PIL" not in imports, "the handler must delegate to resnet_serving"
    assert len(handler.read_text().splitlines()) < 100


def test_architecture_doc_names_what_exists() -> None:
    """docs/architecture.md maps each concern to its module and names; every one of them must exist."""
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1:-1] for line in doc.splitlines() if line.startswith("| ") and "`" in line]
    checked = 0
    for _concern, modules, names in rows:
        paths = [m for m in re.findall(r"`([\w/]+(?:\.py)?/?)`", modules) if not m.startswith("handlers")]
        defined: set[str] = set()
        for rel in paths:
            target = SRC / rel
            files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
            assert files and all(f.is_file() for f in files), f"docs/architecture.md names {rel}, which is not there"
            for f in files:
                defined |= _defined_names(f)
        for name in re.findall(r"`([\w.]+)(?:/[\w/]+)?`", names):
            if name.startswith(("Store.", "Versions.", "InferenceService.", "Classifier.", "Settings.")):
                cls, _, attr = name.partition(".")
                assert cls in defined, f"docs/architecture.md: {cls} not defined in {paths}"
                name = attr
            last = name.split(".")[-1]
            assert last in defined, f"docs/architecture.md: {name} not defined in {paths}"
            checked += 1
    assert checked > 40


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_import_layers_contract_holds_and_can_fail(tmp_path: Path) -> None:
    """The floors of pyproject.toml's [tool.importlinter] (what `make lint` runs) hold on the source, and a
    store module that imports the CLI breaks them (so the contract is not vacuous)."""
    ok = _lint_imports(REPO)
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert "0 broken" in ok.stdout
    shutil.copytree(SRC, tmp_path / "src" / "resnet_serving", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "src" / "resnet_serving" / "store" / "local.py", "a", encoding="utf-8") as f:
        f.write("\nfrom resnet_serving.cli import main  # the wrong way\n")
    bad = _lint_imports(tmp_path)
    assert bad.returncode != 0 and "resnet_serving.store.local -> resnet_serving.cli" in bad.stdout, bad.stdout[-3000:]


def test_no_commands_module_outside_cli() -> None:
    stray = [p.relative_to(SRC) for p in SRC.rglob("commands.py")]
    assert stray == [], f"command modules live in cli/: {stray}"
