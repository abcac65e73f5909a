"""How the test tree is laid out: no test module imports another, and shared test code lives in helper packages.

A test module (``test_*.py``) is collected by pytest; a ``conftest.py`` is loaded by it. Neither is a library:
importing one runs its module-level code a second time under another name, ties the importer to the other
module's private helpers, and hides where a shared helper lives. So, for every module under tests/, each
``tests.*`` import (anywhere in the file, relative ones included) must name:

* a module of a helper package: ``tests.helpers`` (helpers and doubles shared by the tests) or ``tests.fixtures``
  (fixture servers, doubles and the data files they serve);
* or one of the programs that live under tests/ and run on their own (:data:`TOOLS`), which their own tests
  import as the code under test.

And no other module sits beside the tests: a shared helper goes to tests/helpers/, a program into TOOLS.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

#: Packages whose modules any test may import.
HELPER_PACKAGES = ("tests.helpers", "tests.fixtures")

#: Programs under tests/, each run on its own, with how; their tests (and each other) may import them.
TOOLS = {
    "tests.chart.chart_values_doc": "python tests/chart/chart_values_doc.py --write (the chart README's value table)",
    "tests.fuzz.fuzzing": "make fuzz (python -m tests.fuzz.fuzzing)",
    "tests.fuzz.run": "python -m tests.fuzz.run TARGET (one target under atheris)",
    "tests.fuzz.seeds": "python -m tests.fuzz.seeds (the committed seed corpus)",
    "tests.fuzz.targets": "the targets that python -m tests.fuzz.run fuzzes",
    "tests.load.locustfile": "locust -f tests/load/locustfile.py",
    "tests.security.audit": "make audit (python -m tests.security.audit)",
    "tests.security.sbom": "make sbom (python -m tests.security.sbom)",
    "tests.security.image_sbom": "make image-test (python -m tests.security.image_sbom IMAGE: its SBOM and audit)",
}

#: Work in progress elsewhere in the tree, tolerated by name until it lands; delete each entry when it does.
PENDING: dict[str, str] = {}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(root: Path, name: str) -> Path | None:
    """The file of module ``name`` under ``root`` (the directory that holds the ``tests`` package), if any."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imports_of_tests(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``tests`` module in ``path``; ``from P import x`` names ``P.x`` when that
    is a module, else ``P``."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if module_file(root, sub) else base))
    return sorted({(line, mod) for line, mod in found if mod == "tests" or mod.startswith("tests.")})


def allowed(name: str) -> bool:
    return name in TOOLS or any(name == p or name.startswith(p + ".") for p in HELPER_PACKAGES)


def pending(importer: str, imported: str) -> bool:
    return PENDING.get(imported) in ("any", importer)


def problems(root: Path) -> list[str]:
    """What breaks the layout in the ``tests`` package under ``root``: imports of test modules or of modules that
    are neither helpers nor programs, and modules beside the tests that are neither."""
    out = []
    for path in sorted((root / "tests").rglob("*.py")):
        name = module_name(root, path)
        where = path.relative_to(root)
        for line, imported in imports_of_tests(root, path):
            if pending(name, imported):
                continue
            if is_test_module(imported):
                out.append(f"{where}:{line} imports the test module {imported}: move what it shares to tests/helpers/")
            elif not allowed(imported):
                out.append(f"{where}:{line} imports {imported}: neither a helper (tests/helpers/) nor a program")
        if not (is_test_module(name) or path.name == "__init__.py" or allowed(name) or name in PENDING):
            out.append(f"{where} sits beside the tests: a helper goes to tests/helpers/, a program into TOOLS")
    return out


def test_no_test_module_imports_another_and_helpers_live_in_helper_packages() -> None:
    assert problems(REPO) == []


def test_every_tool_is_a_module_that_is_not_a_test() -> None:
    for name in TOOLS:
        assert module_file(REPO, name) is not None, name
        assert not is_test_module(name), name


def test_pending_importers_exist() -> None:
    """An entry whose importer is gone is stale: delete it."""
    for importer in PENDING.values():
        assert importer == "any" or module_file(REPO, importer) is not None, importer


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"tests/__init__.py": "", "tests/helpers/__init__.py": "X = 1\n", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "source",
    [
        "from tests.unit.test_a import thing\n",
        "import tests.unit.test_a\n",
        "from tests.unit import test_a\n",
        "from .test_a import thing\n",
        "from . import test_a\n",
        "def f():\n    from tests.unit.test_a import thing\n",
        "from tests.unit.conftest import fixture\n",
        "from tests.unit.shared import thing\n",
    ],
)
def test_the_check_catches_a_test_importing_a_test_or_a_module_beside_the_tests(tmp_path: Path, source: str) -> None:
    root = _tree(
        tmp_path,
        {
            "tests/unit/test_a.py": "thing = 1\n",
            "tests/unit/conftest.py": "fixture = 1\n",
            "tests/unit/test_b.py": source,
        },
    )
    found = [p for p in problems(root) if p.startswith("tests/unit/test_b.py")]
    assert len(found) == 1, problems(root)


def test_the_check_lets_tests_import_helpers_and_flags_a_stray_helper(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "tests/helpers/chart.py": "from tests.helpers import X\n",
            "tests/fixtures/images.py": "",
            "tests/unit/conftest.py": "from tests.helpers.chart import X\n",
            "tests/unit/test_b.py": "from tests.helpers import X\nfrom tests.helpers.chart import X\n"
            "from tests.fixtures import images\n",
            "tests/unit/shared.py": "",
        },
    )
    stray = "tests/unit/shared.py sits beside the tests: a helper goes to tests/helpers/, a program into TOOLS"
    assert problems(root) == [stray]


def test_the_image_builds_run_after_every_other_test() -> None:
    """tests/conftest.py sorts the tests on the built images (fixture `built`: gigabytes of disk) to the end of
    a run, so a machine short of disk can fail or skip only them."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/images",
            "tests/infra/test_config.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids, proc.stdout + proc.stderr
    last_other = max(i for i, line in enumerate(ids) if not line.startswith("tests/images/"))
    on_images = ids.index("tests/images/test_images_run.py::test_sagemaker_contract")  # uses `built`
    assert on_images > last_other, ids
