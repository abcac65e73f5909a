"""TorchServe entry point packed into every .mar. Thin on purpose: the logic is in resnet_serving.torchserve.handler.

An archive outlives the image that built it, so this file depends on one name of the installed package,
``resnet_serving.torchserve.handler.handle``, and nothing else. If that import fails, it raises RuntimeError
with the real cause: TorchServe 0.12 catches an ImportError from a handler file and retries the name as one
of its own built-in handlers, so the worker would only log "No module named 'ts.torch_handler.resnet50_handler'".
"""

from __future__ import annotations

try:
    from resnet_serving.torchserve.handler import handle
except ImportError as e:
    from importlib import metadata

    try:
        _installed = f"resnet-serving {metadata.version('resnet-serving')} is installed"
    except metadata.PackageNotFoundError:
        _installed = "resnet-serving is not installed"
    raise RuntimeError(
        f"resnet-serving handler: cannot import resnet_serving.torchserve.handler ({e}); {_installed} in "
        "this TorchServe environment. Serve this archive with an image that has resnet-serving installed "
        "(the release that built it or a later one)."
    ) from e

__all__ = ["handle"]
