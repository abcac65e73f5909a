"""The handler file packed into every .mar, loaded the way TorchServe 0.12's worker loads it (``TsModelLoader``).

An archive can meet an installed resnet_serving that lacks what its handler imports (an archive built by a newer
release, served by an older image). The worker must then log the real cause, not TorchServe's fallback message.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import REPO

SHIM = REPO / "handlers" / "resnet50_handler.py"


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A model directory on sys.path, as the worker sees an unpacked archive; the handler module is forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "resnet50_handler", raising=False)
    yield tmp_path
    sys.modules.pop("resnet50_handler", None)


def _load(model_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # ts/version.py reads version.txt without closing it
        from ts.model_loader import TsModelLoader

    TsModelLoader().load("resnet50", str(model_dir), handler="resnet50_handler.py")


def test_torchserve_hides_an_import_error_in_a_handler(model_dir: Path) -> None:
    """Why the shim converts ImportError: TorchServe retries the name as one of its own handlers and reports that."""
    (model_dir / "resnet50_handler.py").write_text("from resnet_serving.no_such_module import handle\n")
    with pytest.raises(ModuleNotFoundError) as err:
        _load(model_dir)
    assert "ts.torch_handler.resnet50_handler" in str(err.value)
    assert "no_such_module" not in str(err.value)


def test_shim_names_the_real_cause_when_the_package_lacks_the_handler(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(SHIM, model_dir / "resnet50_handler.py")
    monkeypatch.setitem(sys.modules, "resnet_serving.torchserve.handler", None)  # import now raises ImportError
    with pytest.raises(RuntimeError) as err:
        _load(model_dir)
    message = str(err.value)
    assert "cannot import resnet_serving.torchserve.handler" in message
    assert f"resnet-serving {metadata.version('resnet-serving')} is installed" in message
    assert "ts.torch_handler" not in message


def test_shim_exposes_the_package_handler(model_dir: Path) -> None:
    from resnet_serving.torchserve import handler

    shutil.copy(SHIM, model_dir / "resnet50_handler.py")
    import resnet50_handler  # type: ignore[import-not-found]

    assert resnet50_handler.handle is handler.handle
