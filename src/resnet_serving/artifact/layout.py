"""The one owner of the artifact's file names: what a ``.mar`` holds and what sits beside it in the store.

::

    <store>/<model>/<version>/model.mar        TorchServe archive: model.pt, index_to_name.json,
                                               model_info.json and the handler shim
    <store>/<model>/<version>/manifest.json    name, version, sha256, size, weights, labels
    model.tar.gz                               what SageMaker downloads: model.mar + manifest.json at its top
"""

from __future__ import annotations

ARCHIVE_NAME = "model.mar"
MANIFEST_NAME = "manifest.json"
#: Inside the archive (TorchServe unpacks it into the worker's model directory).
STATE_DICT_FILE = "model.pt"
LABELS_FILE = "index_to_name.json"
MODEL_INFO_FILE = "model_info.json"
#: The handler shim in this repository's ``handlers/`` folder, archived as the .mar's handler.
HANDLER_FILE = "resnet50_handler.py"
#: The SageMaker model artifact, extracted by SageMaker into ``/opt/ml/model``.
SAGEMAKER_TARBALL = "model.tar.gz"
