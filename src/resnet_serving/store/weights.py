"""Which archives a store accepts: an archive built with random weights stays out of ``s3://`` unless asked for.

``resnet-serving archive`` falls back to seeded random weights when the pretrained ones are neither cached nor
downloadable, and labels the manifest so (``weights.source: random``, ``weights.pretrained: false``). Such a
version answers with meaningless classes; pushed to a real store and promoted, servers following the channel
would serve it. So ``push`` refuses it for an ``s3://`` store unless ``--allow-random-weights`` says it is meant
(a smoke test of the install); a local store (``file://``, a directory) takes it, since that is where tests and
first steps build it.
"""

from __future__ import annotations

import os

from resnet_serving.artifact.manifest import Manifest
from resnet_serving.errors import InputError
from resnet_serving.store.model_store import parse_store_uri

ALLOW_FLAG = "--allow-random-weights"


def has_random_weights(manifest: Manifest) -> bool:
    """Whether the manifest labels its weights random (``source: random`` or ``pretrained: false``)."""
    weights = manifest.weights
    return weights.get("source") == "random" or weights.get("pretrained") is False


def is_remote(store_uri: str | os.PathLike[str] | None) -> bool:
    """Whether the store is a real, shared one (``s3://``) rather than a local directory."""
    return parse_store_uri(store_uri).bucket is not None


def check_weights_for_store(
    manifest: Manifest, store_uri: str | os.PathLike[str] | None, *, allow_random: bool
) -> bool:
    """Raise :class:`InputError` (exit 2) for random weights bound for an ``s3://`` store unless ``allow_random``;
    return whether a random-weights archive goes to one anyway (the caller warns)."""
    if not has_random_weights(manifest) or not is_remote(store_uri):
        return False
    if allow_random:
        return True
    reason = manifest.weights.get("fallback_reason") or "built with --weights random"
    raise InputError(
        f"{manifest.name} v{manifest.version} has RANDOM weights ({reason}): its predictions are meaningless, and "
        f"{store_uri} is a real store that servers and the operator may roll out from. Rebuild it with "
        f"`resnet-serving archive --weights imagenet` (or --weights PATH), or pass {ALLOW_FLAG} to push it anyway "
        "(e.g. for a smoke test)"
    )
