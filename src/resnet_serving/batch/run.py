"""``batch run``: classify every image of one shard of an input, without HTTP, resumably.

Output, under ``--output``, per shard (``shard-00000-of-00004/``):

* ``part-00000.jsonl``, ``part-00001.jsonl``, …: one JSON line per input, each written whole (temp, then in
  place) every ``checkpoint_every`` images;
* ``checkpoint.json``: the parts committed and how many of the shard's keys they hold, written after each part;
* ``summary.json``: written last. Its presence means the shard is finished: a re-run skips it.

A re-run of a killed shard skips the keys its checkpoint counts and numbers its next part after the last one it
counts, so a part written after the last checkpoint is written again, under the same name, with the same lines:
each input ends up on exactly one line. Bad images are result lines (serve's error body); only a store that keeps
failing stops the shard, and its re-run resumes.
"""

from __future__ import annotations

import collections
import json
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_serving import MODEL_NAME, ui
from resnet_serving.artifact.layout import ARCHIVE_NAME
from resnet_serving.batch.shard import Shard
from resnet_serving.errors import (
    AccessDenied,
    ArchiveError,
    InputError,
    NotFound,
    PayloadTooLarge,
    ResnetServingError,
    StoreError,
)
from resnet_serving.settings import Settings
from resnet_serving.store.model_store import open_store
from resnet_serving.store.objects import Location, ObjectInfo, open_location
from resnet_serving.torchserve.config import BATCH_SIZE

#: serve's dynamic batch size: the batch the model is warmed and measured at (bench reports it per batch size).
DEFAULT_BATCH_SIZE = BATCH_SIZE
#: Images per part file and checkpoint: what a killed shard does again at most.
DEFAULT_CHECKPOINT_EVERY = 256
#: Concurrent object reads (S3 GETs wait on the network, not the CPU): botocore's default connection pool size.
DEFAULT_READERS = 10
#: How many errors the summary names (the result lines name them all).
FIRST_ERRORS = 10

SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.json"


@dataclass
class BatchOptions:
    input: str
    output: str
    store: str
    shard: Shard
    version: str | None = None
    channel: str | None = None
    manifest: Path | None = None
    model: str = MODEL_NAME
    batch_size: int = DEFAULT_BATCH_SIZE
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    readers: int = DEFAULT_READERS
    endpoint_url: str | None = None
    progress: bool | None = None


@dataclass
class _State:
    """What the checkpoint carries from one run of a shard to the next."""

    parts: int = 0
    done: int = 0
    last_key: str | None = None
    ok: int = 0
    errors: int = 0
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode("utf-8")


def _named(err: StoreError, flag: str, uri: str) -> StoreError:
    """The same typed error (and exit code), its message prefixed with the flag and the URI it concerns."""
    err.message = f"{flag} {uri}: {err.message}"
    err.args = (err.message,)
    return err


# ---- inputs -------------------------------------------------------------------------------------------
def _manifest_keys(path: Path) -> Iterator[ObjectInfo]:
    """The manifest's keys, one a line, streamed; blank lines and ``#`` comments skipped. Sizes come with the read."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            key = line.strip()
            if key and not key.startswith("#"):
                yield ObjectInfo(key.lstrip("/"), -1)


def _open_manifest(path: Path) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            f.read(1)
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--manifest {path}: cannot be read ({e})") from e


def _preflight_input(source: Location, opts: BatchOptions) -> None:
    """Fail before any work when the input cannot be read: no bucket, no access, nothing there."""
    try:
        if opts.manifest is not None:
            _open_manifest(opts.manifest)
            first = next(_manifest_keys(opts.manifest), None)
            if first is None:
                raise InputError(f"--manifest {opts.manifest}: lists no keys")
            source.exists(first.key)  # a missing key is its own result line; a missing bucket is not
            return
        if next(source.iter_objects(page_size=1), None) is None:
            raise NotFound(f"--input {source.uri}: no objects there (check the bucket and prefix)")
    except StoreError as e:
        if e.message.startswith("--input"):
            raise
        raise _named(e, "--input", source.uri) from None


def _source_objects(source: Location, opts: BatchOptions) -> Iterator[ObjectInfo]:
    return _manifest_keys(opts.manifest) if opts.manifest is not None else source.iter_objects()


# ---- the model ----------------------------------------------------------------------------------------
def _fetch_model(opts: BatchOptions, work: Path) -> tuple[str, Path]:
    """(version, unpacked model dir): the store version fetched and verified by sha256, as ``fetch`` does."""
    store = open_store(opts.store, endpoint_url=opts.endpoint_url)
    version = opts.version
    if version is None:
        channel = opts.channel or "stable"
        version = store.resolve_channel(opts.model, channel)
        if version is None:
            raise NotFound(f"channel {channel!r} of {opts.model} is not set in {store.uri}: promote a version first")
    try:
        archive = store.fetch(opts.model, version, work / "model", progress=ui.terminal_progress(opts.progress))
    except NotFound as e:
        raise _named(e, f"--store {store.uri} --version", version) from None
    unpacked = work / "unpacked"
    try:
        with zipfile.ZipFile(archive) as mar:
            mar.extractall(unpacked)
    except (OSError, zipfile.BadZipFile) as e:
        raise ArchiveError(f"{opts.model} v{version}: {ARCHIVE_NAME} cannot be unpacked ({e})") from e
    assert archive.name == ARCHIVE_NAME
    return version, unpacked


# ---- progress -----------------------------------------------------------------------------------------
@contextmanager
def _progress(enabled: bool, description: str, count: Callable[[], Iterator[object]]) -> Iterator[ui.CountingBar]:
    """images, img/s and ETA on a terminal (ui.counting_progress); nothing off one. The total comes from a second,
    counting pass over the listing, streamed beside the work, only when there is a terminal to show it on."""

    def counter(bar: ui.CountingBar) -> None:
        n = 0
        try:
            for _ in count():
                n += 1
        except ResnetServingError:  # the count only feeds the ETA; the work reports a failing store itself
            return
        bar.set_total(n)

    with ui.counting_progress(description, rate_unit="img/s", enabled=enabled) as bar:
        if enabled:
            threading.Thread(target=counter, args=(bar,), name="batch-count", daemon=True).start()
        yield bar


# ---- the run ------------------------------------------------------------------------------------------
def run_batch(opts: BatchOptions) -> dict[str, Any]:
    """Run one shard to its summary, or return the summary it already has. Fails fast (typed errors) when the input,
    the output or the model cannot be reached, before reading any image or writing anything."""
    if opts.batch_size < 1 or opts.checkpoint_every < 1 or opts.readers < 1:
        raise InputError("--batch-size, --checkpoint-every and --readers must be positive")
    shard = opts.shard
    source = open_location(opts.input, opts.endpoint_url)
    sink = open_location(opts.output, opts.endpoint_url)
    _preflight_input(source, opts)
    summary_key, checkpoint_key = f"{shard.name}/{SUMMARY}", f"{shard.name}/{CHECKPOINT}"
    try:
        if sink.exists(summary_key):
            summary: dict[str, Any] = json.loads(sink.get_bytes(summary_key))
            summary["skipped"] = True
            return summary
        state = _State(**json.loads(sink.get_bytes(checkpoint_key))) if sink.exists(checkpoint_key) else _State()
    except StoreError as e:
        raise _named(e, "--output", sink.uri) from None
    with tempfile.TemporaryDirectory(prefix="resnet-serving-batch-") as tmp:
        version, model_dir = _fetch_model(opts, Path(tmp))
        return _run(opts, source, sink, state, version, model_dir)


def _run(
    opts: BatchOptions, source: Location, sink: Location, state: _State, version: str, model_dir: Path
) -> dict[str, Any]:
    from resnet_serving.inference import imaging, postprocess, protocol
    from resnet_serving.inference.service import InferenceService, batch_logits, configure_threads

    settings = Settings.from_env()
    configure_threads(settings)  # serve's thread budget: the forward pass's threads, and as many decoding
    service = InferenceService.from_model_dir(model_dir, batch_size=opts.batch_size, settings=settings)
    shard = opts.shard
    decode_slots = threading.BoundedSemaphore(service.decode_threads)

    def decode(data: bytes) -> Any:
        return imaging.decode_crop(data, settings) if service.crop_on_cpu else imaging.decode_image(data, settings)

    def load(obj: ObjectInfo) -> tuple[ObjectInfo, int, Any]:
        """(object, size, decoded image or the error that becomes its line). Runs on the reader threads."""
        if obj.size > settings.max_image_bytes:  # not read at all: the limit is known from the listing
            return obj, obj.size, PayloadTooLarge(f"image is {obj.size} bytes; the limit is {settings.max_image_bytes}")
        try:
            data = source.get_bytes(obj.key)
        except (NotFound, AccessDenied) as e:
            return obj, obj.size, e
        with decode_slots:
            try:
                return obj, len(data), decode(data)
            except ResnetServingError as e:
                return obj, len(data), e

    def line(obj: ObjectInfo, size: int, body: dict[str, Any]) -> str:
        out = {"key": obj.key, "etag": obj.etag, "size": size if size >= 0 else None, "model_version": version}
        out.update(body)
        return json.dumps(out, sort_keys=False)

    def keys() -> Iterator[ObjectInfo]:
        owned = shard.select(_source_objects(source, opts), key=lambda o: o.key)
        for n, obj in enumerate(owned, start=1):
            if n < state.done:
                continue
            if n == state.done:
                if obj.key != state.last_key:
                    raise InputError(
                        f"{shard.name}: the input changed since its checkpoint (key {state.done} of the shard is "
                        f"{obj.key!r}, the checkpoint says {state.last_key!r}); write to a new --output"
                    )
                continue
            yield obj

    started = time.monotonic()
    base_elapsed = state.elapsed
    part_lines: list[str] = []
    part_last: str | None = None
    new_images = 0

    def commit_part() -> None:
        nonlocal part_lines
        if not part_lines:
            return
        sink.put_bytes(f"{shard.name}/part-{state.parts:05d}.jsonl", ("\n".join(part_lines) + "\n").encode("utf-8"))
        state.parts += 1
        state.done += len(part_lines)
        state.last_key = part_last
        state.elapsed = base_elapsed + time.monotonic() - started
        sink.put_bytes(f"{shard.name}/{CHECKPOINT}", state.to_json())
        part_lines = []

    def count() -> Iterator[object]:
        return shard.select(_source_objects(source, opts), key=lambda o: o.key)

    enabled = ui.interactive() if opts.progress is None else opts.progress
    prefetch = max(2 * opts.batch_size, opts.readers)
    with (
        ThreadPoolExecutor(opts.readers, thread_name_prefix="batch-read") as pool,
        _progress(enabled, f"batch {shard}", count) as bar,
    ):
        bar.start_at(state.done)
        queue: collections.deque[Future[tuple[ObjectInfo, int, Any]]] = collections.deque()
        pending = keys()
        exhausted = False
        try:
            while True:
                # the bounded prefetch queue: reads and decodes run ahead of the forward pass, never further
                while not exhausted and len(queue) < prefetch:
                    obj = next(pending, None)
                    if obj is None:
                        exhausted = True
                    else:
                        queue.append(pool.submit(load, obj))
                if not queue:
                    break
                batch = [queue.popleft().result() for _ in range(min(opts.batch_size, len(queue)))]
                images = [img for _, _, img in batch if not isinstance(img, BaseException)]
                preds = (
                    postprocess.topk(
                        batch_logits(service.classifier, images, crops=service.crop_on_cpu),
                        settings.default_topk,
                        service.labels,
                    )
                    if images
                    else []
                )
                it = iter(preds)
                for obj, size, img in batch:
                    if isinstance(img, ResnetServingError):
                        body = protocol.error_body(img, service.meta)
                        state.errors += 1
                        if len(state.first_errors) < FIRST_ERRORS:
                            state.first_errors.append({"key": obj.key, "error": img.code, "message": img.message})
                    else:
                        body = protocol.success_body([next(it)], service.meta, multi=False)
                        state.ok += 1
                    part_lines.append(line(obj, size, body))
                    part_last = obj.key
                new_images += len(batch)
                elapsed = time.monotonic() - started
                bar.advance(len(batch), new_images / elapsed if elapsed > 0 else 0.0)
                if len(part_lines) >= opts.checkpoint_every:
                    commit_part()
            commit_part()
        finally:
            for fut in queue:
                fut.cancel()
    # a part numbered past the last one counted was written before a kill, for keys since gone: not results
    stale = state.parts
    while sink.exists(f"{shard.name}/part-{stale:05d}.jsonl"):
        sink.delete(f"{shard.name}/part-{stale:05d}.jsonl")
        stale += 1
    duration = base_elapsed + time.monotonic() - started
    summary = {
        "shard": str(shard),
        "input": source.uri if opts.manifest is None else f"{source.uri} (manifest {opts.manifest})",
        "output": sink.key_uri(shard.name + "/"),
        "model": opts.model,
        "model_version": version,
        "images": state.done,
        "ok": state.ok,
        "errors": state.errors,
        "first_errors": state.first_errors,
        "parts": [f"part-{i:05d}.jsonl" for i in range(state.parts)],
        "duration_s": round(duration, 3),
        "images_per_s": round(state.done / duration, 2) if duration > 0 else None,
        "batch_size": opts.batch_size,
        "threads": service.decode_threads,
    }
    sink.put_bytes(f"{shard.name}/{SUMMARY}", json.dumps(summary, indent=2).encode("utf-8"))
    sink.delete(f"{shard.name}/{CHECKPOINT}")
    summary["skipped"] = False
    return summary
