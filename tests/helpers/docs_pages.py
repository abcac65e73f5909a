"""The pages a reader sees, for the tests that run or check what they show: README.md and the docs site's sources.

A command a page shows sits in a fenced block between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; a test
reads it by NAME with :func:`marked`, wherever the page that shows it lives. Not a test module: the test modules
import it.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: The 2-vCPU `make bench` whose bench.json is tests/fixtures/bench-2vcpu.json.
BENCH_PAGE = DOCS / "measurements" / "2026-12-06-bench-2vcpu.md"
#: bf16 against fp32: the figure serve's bf16 warning quotes.
BF16_PAGE = DOCS / "measurements" / "2026-12-01-bf16.md"
INSTALL_AWS_PAGE = DOCS / "how-to" / "install-aws.md"
OPERATOR_PAGE = DOCS / "how-to" / "operator.md"


def pages() -> list[Path]:
    """README.md, then every Markdown source of the docs site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def marked(name: str, lang: str = "bash") -> str:
    """The body of the ``lang`` block marked ``name``. A page that repeats it (the quickstart is in the README and in
    Get started) must show the same commands, so there is one body to return."""
    tag = re.escape(name)
    pattern = re.compile(rf"<!-- {tag}:begin -->\s*```{lang}\n(.*?)```\s*<!-- {tag}:end -->", re.S)
    found = {page: m.group(1) for page in pages() if (m := pattern.search(text(page)))}
    assert found, f"no page has a {name} block"
    assert len(set(found.values())) == 1, f"the {name} block differs between {[str(p) for p in found]}"
    return next(iter(found.values()))


def section(page: Path, title: str) -> str:
    """From the heading ``title`` (any level) to the next heading of the same or a higher level."""
    body = text(page)
    m = re.search(rf"^(#+) {re.escape(title)}", body, re.M)
    assert m, f"{page} has no heading {title!r}"
    level = len(m.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(body, m.end())
    return body[m.start() : end.start() if end else len(body)]


def block(name: str) -> list[str]:
    """The commands of the bash block marked ``name`` on a page (README.md or docs/), one per line."""
    joined = marked(name).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]
