"""Synthesize resnet-serving's CloudFormation templates into infra/templates/ (run by `make infra`).

    python infra/app.py [--config infra/config.json] [--out infra/templates]

No CDK CLI and no AWS account needed: the templates deploy with `aws cloudformation deploy`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from resnet_infra.config import DEFAULT_CONFIG, ConfigError, load  # noqa: E402


def synth(config: Path, out: Path) -> list[Path]:
    cfg = load(config)  # before importing CDK: a bad config fails in milliseconds
    from resnet_infra.app import build

    with tempfile.TemporaryDirectory(prefix="cdk-out-") as tmp:
        built = build(cfg, Path(tmp))
        assembly = built.app.synth()
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for stack in assembly.stacks:
            template = json.dumps(stack.template, indent=1, sort_keys=True) + "\n"
            target = out / f"{stack.stack_name}.json"
            fd, tmp_path = tempfile.mkstemp(dir=out, prefix=f".{target.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(template)
            os.replace(tmp_path, target)
            written.append(target)
    for stale in set(out.glob("*.json")) - set(written):
        stale.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=HERE / "templates")
    args = parser.parse_args(argv)
    try:
        written = synth(args.config, args.out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
