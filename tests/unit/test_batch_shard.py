"""``batch run``'s sharding: every key in exactly one shard, the same shard on every run; the flags and the
Indexed Job's environment resolve to the shard they name, or to an error that names what is wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_serving.batch.shard import ENV_INDEX, ENV_SHARDS, Shard, parse_shard, resolve_shard, shard_of
from resnet_serving.errors import ConfigError

keys = st.lists(st.text(min_size=1, max_size=40), min_size=0, max_size=200, unique=True)


@settings(max_examples=200, deadline=None)
@given(keys=keys, count=st.integers(min_value=1, max_value=17))
def test_shards_are_disjoint_and_cover_every_key(keys: list[str], count: int) -> None:
    picked = [list(Shard(i, count).select(sorted(keys), key=str)) for i in range(count)]
    flat = [k for shard in picked for k in shard]
    assert sorted(flat) == sorted(keys)  # complete, and no key twice
    assert len(flat) == len(set(flat))
    for shard in picked:  # each shard keeps the listing's order
        assert shard == sorted(shard)


@settings(max_examples=100, deadline=None)
@given(keys=keys, count=st.integers(min_value=1, max_value=17))
def test_a_key_s_shard_does_not_depend_on_the_other_keys(keys: list[str], count: int) -> None:
    alone = {k: shard_of(k, count) for k in keys}
    together = {k: i for i in range(count) for k in Shard(i, count).select(keys, key=str)}
    assert alone == together


def test_the_split_is_the_same_in_another_process() -> None:
    """A fresh interpreter (another hash seed) puts each key in the same shard: the split is not ``hash()``'s."""
    keys = [f"images/{n:05d}.jpg" for n in range(200)]
    here = [shard_of(k, 7) for k in keys]
    code = f"from resnet_serving.batch.shard import shard_of; print([shard_of(k, 7) for k in {keys!r}])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.stdout.strip() == str(here)
    assert len(set(here)) == 7  # and the keys spread over every shard


@pytest.mark.parametrize(("value", "expected"), [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 0/16 ", Shard(0, 16))])
def test_parse_shard(value: str, expected: Shard) -> None:
    assert parse_shard(value) == expected


@pytest.mark.parametrize("value", ["4/4", "1", "a/b", "-1/3", "0/0", "1/100000"])
def test_parse_shard_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(value)


def test_resolve_from_the_indexed_job_environment() -> None:
    assert resolve_shard(None, 4, {ENV_INDEX: "2"}) == Shard(2, 4)
    assert resolve_shard(None, None, {ENV_INDEX: "2", ENV_SHARDS: "5"}) == Shard(2, 5)
    assert resolve_shard("1/3", None, {ENV_INDEX: "2", ENV_SHARDS: "5"}) == Shard(1, 3)  # the flag wins
    assert resolve_shard(None, None, {}) == Shard(0, 1)
    assert Shard(3, 16).name == "shard-00003-of-00016"


@pytest.mark.parametrize(
    ("shards", "env", "match"),
    [
        (None, {ENV_INDEX: "2"}, "--shards N"),
        (4, {ENV_INDEX: "4"}, "JOB_COMPLETION_INDEX=4"),
        (4, {}, "without an index"),
        (None, {ENV_INDEX: "x", ENV_SHARDS: "3"}, "JOB_COMPLETION_INDEX"),
        (None, {ENV_INDEX: "0", ENV_SHARDS: "three"}, ENV_SHARDS),
    ],
)
def test_resolve_rejects(shards: int | None, env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_shard(None, shards, env)
