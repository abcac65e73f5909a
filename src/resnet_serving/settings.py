"""One typed settings object, loaded once at start-up from the environment, failing fast on bad values.

Configuration flows one way: environment (set by `serve`, the Helm chart or SageMaker) → :class:`Settings`.
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from resnet_serving.errors import ConfigError

ENV_PREFIX = "RESNET_SERVING_"
#: Where the model comes from, shared by serve, fetch, sync, the chart's init container and the operator's patch.
ENV_STORE = "RESNET_SERVING_STORE"
ENV_VERSION = "RESNET_SERVING_MODEL_VERSION"
ENV_CHANNEL = "RESNET_SERVING_MODEL_CHANNEL"


@dataclass(frozen=True)
class Settings:
    #: Largest accepted request body per image, in bytes (413 above it).
    max_image_bytes: int = 20 * 1024 * 1024
    #: Largest accepted image, in pixels (width × height), checked from the header before decoding (413).
    max_image_pixels: int = 40_000_000
    #: Images accepted in one JSON request (413 above it).
    max_images_per_request: int = 16
    #: Default number of predictions returned per image.
    default_topk: int = 5
    #: Upper bound for the per-request ``topk`` parameter (400 above it).
    max_topk: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            raw = env.get(key)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = int(raw.strip().replace("_", ""))
            except ValueError as e:
                raise ConfigError(f"{key}={raw!r}: expected an integer") from e
            if value < 1:
                raise ConfigError(f"{key}={raw!r}: must be ≥ 1")
            values[f.name] = value
        settings = cls(**values)
        if settings.default_topk > settings.max_topk:
            raise ConfigError(
                f"{ENV_PREFIX}DEFAULT_TOPK ({settings.default_topk}) exceeds {ENV_PREFIX}MAX_TOPK ({settings.max_topk})"
            )
        if settings.max_topk > 1000:
            raise ConfigError(f"{ENV_PREFIX}MAX_TOPK must be ≤ 1000 (there are 1000 ImageNet classes)")
        return settings

    def to_env(self) -> dict[str, str]:
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
