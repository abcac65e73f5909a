"""Which keys a shard owns: ``--shard i/N``, or an Indexed Job's ``JOB_COMPLETION_INDEX`` with ``--shards N``.

A key belongs to shard ``sha256(key) mod N``. Every shard streams the same listing and keeps its own keys, so
no shard needs the whole listing, a count of it, or another shard's progress, and the split is the same on every
run and every machine (no process-salted ``hash()``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from resnet_serving.errors import ConfigError
from resnet_serving.settings import ENV_BATCH_SHARDS as ENV_SHARDS

#: Set by Kubernetes in each pod of an Indexed Job.
ENV_INDEX = "JOB_COMPLETION_INDEX"
#: Far more shards than any Job runs; a bound keeps the output's names (``shard-00003-of-00016``) fixed-width.
MAX_SHARDS = 99999

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ConfigError(f"shard count {self.count}: expected 1..{MAX_SHARDS}")
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard index {self.index}: expected 0..{self.count - 1} for {self.count} shards")

    @property
    def name(self) -> str:
        """The shard's folder under ``--output``: ``shard-00003-of-00016``."""
        return shard_name(self.index, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    def select(self, items: Iterable[T], key: Callable[[T], str]) -> Iterator[T]:
        """The items of this shard, in the order they come (a stream in, a stream out)."""
        for item in items:
            if self.owns(key(item)):
                yield item


def shard_name(index: int, count: int) -> str:
    """The folder a shard writes under ``--output`` (``batch status`` reads them back by this name)."""
    return f"shard-{index:05d}-of-{count:05d}"


def shard_of(key: str, count: int) -> int:
    # By a hash of the key, not by position in the listing: a shard then needs no count of the keys before its own.
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


_SHARD = re.compile(r"(\d+)/(\d+)")


def parse_shard(value: str) -> Shard:
    """``i/N`` (0-based index) → :class:`Shard`; a ConfigError naming the flag otherwise."""
    m = _SHARD.fullmatch(value.strip())
    if not m:
        raise ConfigError(f"--shard {value!r}: expected INDEX/COUNT, e.g. 0/4 (indexes start at 0)")
    try:
        return Shard(int(m.group(1)), int(m.group(2)))
    except ConfigError as e:
        raise ConfigError(f"--shard {value!r}: {e.message}") from e


def resolve_shard(shard: str | None, shards: int | None, environ: Mapping[str, str]) -> Shard:
    """``--shard i/N`` wins; else ``$JOB_COMPLETION_INDEX`` with ``--shards N`` (or ``$RESNET_SERVING_BATCH_SHARDS``);
    else the whole input as one shard."""
    if shard is not None:
        return parse_shard(shard)
    index_env = environ.get(ENV_INDEX, "").strip()
    count: int | None = shards
    if count is None and environ.get(ENV_SHARDS, "").strip():
        raw = environ[ENV_SHARDS].strip()
        if not raw.isdigit():
            raise ConfigError(f"${ENV_SHARDS} {raw!r}: expected a positive integer")
        count = int(raw)
    if not index_env:
        if count not in (None, 1):
            raise ConfigError(f"--shards {count} without an index: pass --shard INDEX/{count} or set ${ENV_INDEX}")
        return Shard(0, 1)
    if not index_env.isdigit():
        raise ConfigError(f"${ENV_INDEX} {index_env!r}: expected a non-negative integer")
    if count is None:
        raise ConfigError(f"${ENV_INDEX} is set: pass --shards N (the Job's completions) or set ${ENV_SHARDS}")
    try:
        return Shard(int(index_env), count)
    except ConfigError as e:
        raise ConfigError(f"${ENV_INDEX}={index_env} with {count} shards: {e.message}") from e
