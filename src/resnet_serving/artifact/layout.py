"""The one owner of the artifact's file names: what a ``.mar`` holds and what sits beside it in the store.

::

    <store>/<model>/<version>/model.mar        TorchServe archive: model.pt, index_to_name.json,
                                               model_info.json and the handler shim (and, built with
                                               ``--runtime openvino``, model.xml and model.bin)
    <store>/<model>/<version>/manifest.json    name, version, sha256, size, weights, labels
    model.tar.gz                               what SageMaker downloads: model.mar + manifest.json at its top

TorchServe's model store holds the archive under one of two names: :data:`ARCHIVE_NAME` where a verified model
directory is the model store (``serve``, ``bench``, SageMaker's ``/opt/ml/model``), and
:func:`synced_archive_name` for each version ``sync`` places beside it, so that versions never share a name.
"""

from __future__ import annotations

ARCHIVE_NAME = "model.mar"
#: What torch-model-archiver names its output (``<model name>.mar``) and what TorchServe loads.
ARCHIVE_SUFFIX = ".mar"
MANIFEST_NAME = "manifest.json"
#: Inside the archive (TorchServe unpacks it into the worker's model directory).
STATE_DICT_FILE = "model.pt"
LABELS_FILE = "index_to_name.json"
MODEL_INFO_FILE = "model_info.json"
#: The OpenVINO IR (``archive --runtime openvino``): the network's graph and its weights, beside model.pt.
IR_XML_FILE = "model.xml"
IR_BIN_FILE = "model.bin"
#: The handler shim in this repository's ``handlers/`` folder, archived as the .mar's handler.
HANDLER_FILE = "resnet50_handler.py"
#: The SageMaker model artifact, extracted by SageMaker into ``/opt/ml/model``.
SAGEMAKER_TARBALL = "model.tar.gz"


def synced_archive_name(model: str, version: str) -> str:
    """A version ``sync`` placed in TorchServe's model store: ``<model>-v<version>.mar``."""
    return f"{model}-v{version}{ARCHIVE_SUFFIX}"
