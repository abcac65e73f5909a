"""One typed settings object, loaded once at start-up from the environment, failing fast on bad values.

Configuration flows one way: environment (set by ``serve``, the Helm chart or SageMaker) → :class:`Settings`.
Every ``RESNET_SERVING_*`` variable that the serving path reads is a field here: its name is
``RESNET_SERVING_`` + the field name in upper case, its type and range are checked in :meth:`Settings.from_env`,
and a bad value raises :class:`~resnet_serving.errors.ConfigError` naming the variable. The CLI's flag defaults
(``RESNET_SERVING_STORE`` and friends, below) and the operator's ``RESNET_SERVING_OPERATOR_*``
(:mod:`resnet_serving.controller.config`) are read where the flags are parsed. :func:`environment` is the one
place the process environment is read from. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from resnet_serving.errors import ConfigError

ENV_PREFIX = "RESNET_SERVING_"
#: The local store `archive` writes to and `serve` reads from when no --store is given.
DEFAULT_STORE = "file://model-store"
#: Where the model comes from, shared by serve, fetch, sync, the chart's init container and the operator's patch.
ENV_STORE = "RESNET_SERVING_STORE"
ENV_VERSION = "RESNET_SERVING_MODEL_VERSION"
ENV_CHANNEL = "RESNET_SERVING_MODEL_CHANNEL"
#: The default server URL of `predict`.
ENV_URL = "RESNET_SERVING_URL"
# `predict` through the API Gateway front door (Cognito client credentials and the usage plan's API key).
#: Cognito's token endpoint (the front door stack's output ``TokenUrl``); with it, requests carry a bearer token.
ENV_TOKEN_URL = "RESNET_SERVING_TOKEN_URL"
#: The app client's id (output ``MachineClientId``).
ENV_CLIENT_ID = "RESNET_SERVING_CLIENT_ID"
#: The app client's secret, when no ``--client-secret-file`` is given.
ENV_CLIENT_SECRET = "RESNET_SERVING_CLIENT_SECRET"
#: The OAuth scope to ask for (default: every scope the app client may have).
ENV_SCOPE = "RESNET_SERVING_SCOPE"
#: The usage plan's API key, sent as ``x-api-key``.
ENV_API_KEY = "RESNET_SERVING_API_KEY"

#: `batch run`: the Indexed Job's completions, for the pod (Kubernetes does not pass them itself).
ENV_BATCH_SHARDS = "RESNET_SERVING_BATCH_SHARDS"
#: The S3 endpoint every AWS command honours (boto3's own variable).
ENV_AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AMP_CHOICES = ("auto", "off", "fp16", "bf16")
#: How a CPU worker decodes and resizes (Settings.cpu_resize); the first is the default.
CPU_RESIZE_CHOICES = ("torch", "pil")
#: The largest request SageMaker passes to a container, by endpoint kind (its documented invocation limits).
SAGEMAKER_PAYLOAD_LIMITS = {"realtime": 6 * 1024 * 1024, "serverless": 4 * 1024 * 1024}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def environment() -> Mapping[str, str]:
    """The process environment: the one place the package reads it (settings, flag defaults, child processes)."""
    return os.environ


@contextlib.contextmanager
def children_inherit(extra: Mapping[str, str]) -> Iterator[None]:
    """Processes started inside this block inherit ``extra`` on top of this process's environment (what a spawned
    multiprocessing child gets); the environment is restored after."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _positive_int(key: str, raw: str) -> int:
    try:
        value = int(raw.replace("_", ""))
    except ValueError as e:
        raise ConfigError(f"{key}={raw!r}: expected an integer") from e
    if value < 1:
        raise ConfigError(f"{key}={raw!r}: must be ≥ 1")
    return value


def _flag(key: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{key}={raw!r}: expected 1 or 0 (true/false, yes/no, on/off)")


def _choice(choices: Iterable[str]) -> Callable[[str, str], str]:
    """A parser for a variable that takes one of ``choices``, case-insensitively."""
    allowed = tuple(choices)

    def parse(key: str, raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise ConfigError(f"{key}={raw!r}: expected one of {', '.join(allowed)}")
        return value

    return parse


def _text(key: str, raw: str) -> str:
    return raw


def _path(key: str, raw: str) -> Path:
    return Path(raw)


def _var(parse: Callable[[str, str], Any], doc: str) -> dict[str, Any]:
    """A field's metadata: how its variable is parsed and checked, and what it means."""
    return {"parse": parse, "doc": doc}


@dataclass(frozen=True)
class Settings:
    # ---- request limits (the handler answers 4xx above them)
    max_image_bytes: int = field(
        default=20 * 1024 * 1024, metadata=_var(_positive_int, "largest accepted image, in bytes (413 above)")
    )
    max_image_pixels: int = field(
        default=40_000_000, metadata=_var(_positive_int, "largest image in pixels, checked from the header (413)")
    )
    max_images_per_request: int = field(
        default=16, metadata=_var(_positive_int, "images accepted in one JSON request (413 above)")
    )
    default_topk: int = field(default=5, metadata=_var(_positive_int, "predictions returned per image by default"))
    max_topk: int = field(default=100, metadata=_var(_positive_int, "upper bound of the per-request topk (400 above)"))
    # ---- the model in the worker
    amp: str = field(
        default="auto",
        metadata=_var(
            _choice(AMP_CHOICES),
            "auto (fp16 on CUDA; bf16 on a CPU with native bf16, else fp32), off (fp32), fp16 or bf16",
        ),
    )
    compile: bool = field(default=False, metadata=_var(_flag, "torch.compile the model during the worker's warm-up"))
    gpu_decode: bool = field(
        default=True, metadata=_var(_flag, "decode JPEG batches on the GPU when the model runs on one")
    )
    freeze: bool = field(default=True, metadata=_var(_flag, "run the CPU model as a frozen TorchScript graph"))
    jpeg_scaled_decode: bool = field(
        default=False,
        metadata=_var(
            _flag, "on a CPU, decode a large JPEG at 1/2, 1/4 or 1/8 scale (not bit-exact; check with evaluate)"
        ),
    )
    cpu_resize: str = field(
        default=CPU_RESIZE_CHOICES[0],
        metadata=_var(
            _choice(CPU_RESIZE_CHOICES),
            "on a CPU, torch (libjpeg-turbo and torchvision.transforms.v2's uint8 resize, within one grey level of "
            "transforms() on PIL images) or pil (PIL decodes and resizes, bit-exact with it)",
        ),
    )
    torch_threads: int | None = field(
        default=None, metadata=_var(_positive_int, "torch threads per worker; serve sets it from the CPU quota")
    )
    sagemaker_mode: str = field(
        default="",
        metadata=_var(
            _choice(SAGEMAKER_PAYLOAD_LIMITS), "realtime or serverless: answer 413 above that SageMaker payload limit"
        ),
    )
    # ---- serve and archive
    java_opts: str = field(default="", metadata=_var(_text, "extra JVM options for TorchServe's front end"))
    handler: Path | None = field(
        default=None, metadata=_var(_path, "the handler shim to archive (default: handlers/ of a source checkout)")
    )

    @property
    def max_request_bytes(self) -> int | None:
        """The whole request body's cap on a SageMaker endpoint (``None``: only the per-image limits apply)."""
        return SAGEMAKER_PAYLOAD_LIMITS.get(self.sagemaker_mode)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = environment() if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = env_name(f.name)
            raw = env.get(key)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = f.metadata["parse"](key, raw.strip())
        settings = cls(**values)
        if settings.default_topk > settings.max_topk:
            raise ConfigError(
                f"{env_name('default_topk')} ({settings.default_topk}) exceeds {env_name('max_topk')} "
                f"({settings.max_topk})"
            )
        if settings.max_topk > 1000:
            raise ConfigError(f"{env_name('max_topk')} must be ≤ 1000 (there are 1000 ImageNet classes)")
        return settings

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in another process (unset ones are left out)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[env_name(f.name)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out


#: The variable `serve` sets for its workers (read back as Settings.torch_threads).
ENV_TORCH_THREADS = env_name("torch_threads")
#: The variable `sagemaker deploy` sets in the Model's environment (read back as Settings.sagemaker_mode).
ENV_SAGEMAKER_MODE = env_name("sagemaker_mode")


def source_checkout() -> Path | None:
    """The repository root when the package runs from a source checkout (``pip install -e``), else ``None``.

    Only the defaults that name files of the repository (the handler shim, the example image) use it; an
    installed package gets them from flags or :class:`Settings` instead.
    """
    root = Path(__file__).resolve().parent.parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "handlers").is_dir() else None
