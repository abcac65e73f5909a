"""Run one fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.run TARGET [libFuzzer flags] [DIRS]``.

``TARGET`` is a name in :data:`tests.fuzz.targets.TARGETS`, or ``selftest`` (a target that crashes on
``crash`` and hangs on ``hang``, which proves the harness reports both). libFuzzer's flags apply: ``-runs=N``
bounds the inputs, ``-timeout=2`` makes an input that runs longer than 2 s a finding, ``-artifact_prefix=DIR/``
says where the input that crashed or hung is saved. libFuzzer adds new inputs to the first corpus directory
given, so pass a scratch directory before the committed seeds. ``make fuzz`` and tests/fuzz/test_fuzz.py call
this.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import atheris


def selftest(data: bytes) -> None:
    if data.startswith(b"crash"):
        raise RuntimeError("selftest: the harness must report this")
    if data.startswith(b"hang"):
        time.sleep(30)


def load(name: str) -> Callable[[bytes], None]:
    if name == "selftest":
        return selftest
    with atheris.instrument_imports(include=["resnet_serving"]):
        from tests.fuzz.targets import TARGETS
    if name not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join([*TARGETS, 'selftest'])}}} [libFuzzer flags] [dirs]")
    return TARGETS[name]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m tests.fuzz.run TARGET [libFuzzer flags] [corpus dirs]")
    target = load(argv[1])
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
