"""A PromQL evaluator for the subset the chart's alert rules use, and Prometheus's alerting loop (`for:`) over it.

promtool is in no registry this project installs from, and no maintained Python package evaluates PromQL (PyPI's
promql-parser parses only), so the alert tests run the rules' expressions here over recorded series. What it
implements follows Prometheus 3: instant selectors look back 5 minutes, range selectors take samples in
``(t - range, t]``, ``rate``/``increase`` extrapolate as ``extrapolatedRate`` does, ``histogram_quantile``
interpolates within a bucket as ``bucketQuantile`` does, and vector matching follows ``on``/``ignoring``/
``group_left``. Anything else (subqueries, ``@``, ``bool``, other functions) raises :class:`Unsupported`, so a
rule that grows past the subset fails its test instead of being evaluated wrongly.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Prometheus's default lookback for an instant selector.
LOOKBACK_S = 300.0
#: How often the tests' Prometheus evaluates a rule group (its default evaluation_interval is 1m; 30s is common).
EVAL_INTERVAL_S = 30.0

Labels = tuple[tuple[str, str], ...]


class Unsupported(Exception):
    """A PromQL construct outside the evaluator's subset."""


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


def duration_s(text: str) -> float:
    """``5m``, ``1h30m``, ``90s`` → seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise Unsupported(f"duration {text!r}")
    return float(sum(int(n) * units[u] for n, u in parts))


# --- series ----------------------------------------------------------------------------------------------------


@dataclass
class Store:
    """Recorded series: labels (``__name__`` included) → samples ``(t, value)`` in time order."""

    series: dict[Labels, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], samples: Iterable[tuple[float, float]]) -> None:
        key = labels_of({**labels, "__name__": name})
        self.series.setdefault(key, []).extend(samples)
        self.series[key].sort()

    def counter(
        self, name: str, labels: Mapping[str, str], per_second: Callable[[float], float], start: float, end: float
    ) -> None:
        """A counter scraped every 30 s from ``start`` to ``end``, growing at ``per_second(t)``."""
        value, samples = 0.0, []
        for t in scrape_times(start, end):
            samples.append((t, value))
            value += per_second(t) * SCRAPE_S
        self.add(name, labels, samples)

    def gauge(
        self, name: str, labels: Mapping[str, str], value: Callable[[float], float], start: float, end: float
    ) -> None:
        self.add(name, labels, [(t, value(t)) for t in scrape_times(start, end)])

    def histogram(
        self,
        name: str,
        labels: Mapping[str, str],
        buckets: Sequence[float],
        per_second: Callable[[float], float],
        seconds: Callable[[float], float],
        start: float,
        end: float,
    ) -> None:
        """A prometheus_client histogram scraped every 30 s: ``per_second(t)`` observations a second, each of
        ``seconds(t)``; its ``_bucket`` (``le`` up to ``+Inf``), ``_count`` and ``_sum`` series."""
        bounds = [*buckets, math.inf]
        counts = [0.0] * len(bounds)
        total = sum_ = 0.0
        out: dict[str, list[tuple[float, float]]] = {le_text(b): [] for b in bounds}
        count_s, sum_s = [], []
        for t in scrape_times(start, end):
            for b, c in zip(bounds, counts, strict=True):
                out[le_text(b)].append((t, c))
            count_s.append((t, total))
            sum_s.append((t, sum_))
            n, v = per_second(t) * SCRAPE_S, seconds(t)
            counts = [c + (n if v <= b else 0) for b, c in zip(bounds, counts, strict=True)]
            total += n
            sum_ += n * v
        for le, samples in out.items():
            self.add(f"{name}_bucket", {**labels, "le": le}, samples)
        self.add(f"{name}_count", labels, count_s)
        self.add(f"{name}_sum", labels, sum_s)


SCRAPE_S = 30.0


def scrape_times(start: float, end: float) -> list[float]:
    n = int((end - start) // SCRAPE_S)
    return [start + i * SCRAPE_S for i in range(n + 1)]


def le_text(bound: float) -> str:
    """The ``le`` label as prometheus_client writes it (``0.5``, ``1.0``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


# --- parser ----------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![a-zA-Z_:\d.]))
    |(?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],:@])
    )""",
    re.VERBOSE,
)

AGGREGATIONS = {"sum", "max", "min", "count", "avg"}
FUNCTIONS = {"rate", "increase", "histogram_quantile", "absent", "time", "vector"}
#: Binary operators by precedence, loosest first; ``^`` is right-associative in PromQL and unused here.
PRECEDENCE = [("or",), ("and", "unless"), ("==", "!=", ">", "<", ">=", "<="), ("+", "-"), ("*", "/", "%")]
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}


def tokenize(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise Unsupported(f"cannot read {expr[pos : pos + 20]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


@dataclass
class Node:
    kind: str  # number, selector, range, call, agg, binary, neg
    args: list[Any] = field(default_factory=list)
    value: Any = None
    opts: dict[str, Any] = field(default_factory=dict)


class Parser:
    def __init__(self, expr: str) -> None:
        self.tokens = tokenize(expr)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> str:
        kind, text = self.peek()
        if value is not None and text != value:
            raise Unsupported(f"expected {value!r}, got {text!r}")
        if kind == "eof":
            raise Unsupported("unexpected end of expression")
        self.pos += 1
        return text

    def parse(self) -> Node:
        node = self.binary(0)
        if self.peek()[0] != "eof":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def binary(self, level: int) -> Node:
        if level == len(PRECEDENCE):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[1] in PRECEDENCE[level] and self.peek()[0] in ("op", "ident"):
            op = self.take()
            opts: dict[str, Any] = {}
            if self.peek()[1] == "bool":
                raise Unsupported("the bool modifier")
            if self.peek()[1] in ("on", "ignoring"):
                opts["match"] = self.take()
                opts["labels"] = self.label_list()
            if self.peek()[1] in ("group_left", "group_right"):
                opts["group"] = self.take()
                opts["include"] = self.label_list() if self.peek()[1] == "(" else []
            right = self.binary(level + 1)
            left = Node("binary", [left, right], op, opts)
        return left

    def unary(self) -> Node:
        if self.peek()[1] == "-":
            self.take()
            return Node("neg", [self.unary()])
        if self.peek()[1] == "^":
            raise Unsupported("the ^ operator")
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        if self.peek()[1] == "[":
            if node.kind != "selector":
                raise Unsupported("subqueries")
            self.take("[")
            kind, text = self.peek()
            if kind != "duration":
                raise Unsupported(f"range {text!r}")
            self.take()
            if self.peek()[1] == ":":
                raise Unsupported("subqueries")
            self.take("]")
            node = Node("range", [node], duration_s(text))
        if self.peek()[1] == "offset":
            self.take()
            target = node.args[0] if node.kind == "range" else node
            target.opts["offset"] = duration_s(self.take())
        if self.peek()[1] == "@":
            raise Unsupported("the @ modifier")
        return node

    def label_list(self) -> list[str]:
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            names.append(self.take())
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return names

    def primary(self) -> Node:
        kind, text = self.peek()
        if text == "(":
            self.take()
            node = self.binary(0)
            self.take(")")
            return node
        if kind == "number":
            self.take()
            return Node("number", value=float(text))
        if text == "{":
            return Node("selector", value="", opts={"matchers": self.matchers()})
        if kind != "ident":
            raise Unsupported(f"unexpected {text!r}")
        self.take()
        if text in AGGREGATIONS:
            grouping = None
            if self.peek()[1] in ("by", "without"):
                grouping = (self.take(), self.label_list())
            self.take("(")
            arg = self.binary(0)
            self.take(")")
            if self.peek()[1] in ("by", "without"):
                grouping = (self.take(), self.label_list())
            if grouping is not None and grouping[0] == "without":
                raise Unsupported("aggregation without()")
            return Node("agg", [arg], text, {"by": grouping[1] if grouping else []})
        if self.peek()[1] == "(":
            if text not in FUNCTIONS:
                raise Unsupported(f"function {text}()")
            self.take("(")
            args = []
            while self.peek()[1] != ")":
                args.append(self.binary(0))
                if self.peek()[1] == ",":
                    self.take()
            self.take(")")
            return Node("call", args, text)
        if text in AGGREGATIONS | FUNCTIONS:
            raise Unsupported(f"{text} without arguments")
        matchers = self.matchers() if self.peek()[1] == "{" else []
        return Node("selector", value=text, opts={"matchers": matchers})

    def matchers(self) -> list[tuple[str, str, str]]:
        self.take("{")
        out = []
        while self.peek()[1] != "}":
            label = self.take()
            op = self.take()
            if op not in ("=", "!=", "=~", "!~"):
                raise Unsupported(f"matcher operator {op!r}")
            kind, value = self.peek()
            if kind != "string":
                raise Unsupported(f"matcher value {value!r}")
            self.take()
            out.append((label, op, bytes(value[1:-1], "utf-8").decode("unicode_escape")))
            if self.peek()[1] == ",":
                self.take()
        self.take("}")
        return out


def parse(expr: str) -> Node:
    return Parser(expr).parse()


# --- evaluation ------------------------------------------------------------------------------------------------

Vector = dict[Labels, float]


def _matches(labels: Mapping[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        have = labels.get(label, "")
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "=~" and not re.fullmatch(value, have):
            return False
        if op == "!~" and re.fullmatch(value, have):
            return False
    return True


def _drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != "__name__")


def _selected(store: Store, node: Node) -> list[tuple[Labels, list[tuple[float, float]]]]:
    matchers = list(node.opts["matchers"])
    if node.value:
        matchers.append(("__name__", "=", node.value))
    return [(k, s) for k, s in store.series.items() if _matches(dict(k), matchers)]


def extrapolated_rate(samples: list[tuple[float, float]], start: float, end: float, is_rate: bool) -> float | None:
    """Prometheus's ``extrapolatedRate`` for a counter over ``(start, end]``."""
    if len(samples) < 2:
        return None
    result = samples[-1][1] - samples[0][1]
    for (_, a), (_, b) in itertools.pairwise(samples):
        if b < a:  # a counter reset: the counter restarted from zero
            result += a
    first_t, last_t = samples[0][0], samples[-1][0]
    to_start, to_end = first_t - start, end - last_t
    sampled = last_t - first_t
    average = sampled / (len(samples) - 1)
    if result > 0 and samples[0][1] >= 0:
        to_zero = sampled * (samples[0][1] / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2)
    interval += to_end if to_end < threshold else average / 2
    result *= interval / sampled
    return result / (end - start) if is_rate else result


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``bucketQuantile`` over ``(upper bound, cumulative count)`` pairs."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]) or len(buckets) < 2:
        return math.nan
    counts = [c for _, c in buckets]
    for i in range(1, len(counts)):  # Prometheus repairs non-monotonic buckets the same way
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], counts[b]
    if b > 0:
        start = buckets[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


class Evaluator:
    def __init__(self, store: Store) -> None:
        self.store = store

    def instant(self, expr: str | Node, t: float) -> Vector | float:
        node = parse(expr) if isinstance(expr, str) else expr
        return self.eval(node, float(t))

    def eval(self, node: Node, t: float) -> Vector | float:
        if node.kind == "number":
            return float(node.value)
        if node.kind == "neg":
            inner = self.eval(node.args[0], t)
            return -inner if isinstance(inner, float) else {_drop_name(k): -v for k, v in inner.items()}
        if node.kind == "selector":
            at = t - node.opts.get("offset", 0.0)
            out: Vector = {}
            for key, samples in _selected(self.store, node):
                recent = [v for ts, v in samples if at - LOOKBACK_S < ts <= at]
                if recent:
                    out[key] = recent[-1]
            return out
        if node.kind == "range":
            raise Unsupported("a range vector where an instant vector is expected")
        if node.kind == "call":
            return self.call(node, t)
        if node.kind == "agg":
            return self.aggregate(node, t)
        if node.kind == "binary":
            return self.binary(node, t)
        raise Unsupported(node.kind)

    def vector(self, node: Node, t: float) -> Vector:
        value = self.eval(node, t)
        if isinstance(value, float):
            raise Unsupported("a scalar where a vector is expected")
        return value

    def call(self, node: Node, t: float) -> Vector | float:
        name = node.value
        if name == "time":
            return t
        if name == "vector":
            return {(): float(self.eval(node.args[0], t))}  # type: ignore[arg-type]
        if name in ("rate", "increase"):
            (arg,) = node.args
            if arg.kind != "range":
                raise Unsupported(f"{name}() of something other than a range selector")
            sel, width = arg.args[0], arg.value
            end = t - sel.opts.get("offset", 0.0)
            out: Vector = {}
            for key, samples in _selected(self.store, sel):
                window = [(ts, v) for ts, v in samples if end - width < ts <= end]
                value = extrapolated_rate(window, end - width, end, name == "rate")
                if value is not None:
                    out[_drop_name(key)] = value
            return out
        if name == "histogram_quantile":
            q = self.eval(node.args[0], t)
            if not isinstance(q, float):
                raise Unsupported("histogram_quantile with a non-scalar quantile")
            groups: dict[Labels, list[tuple[float, float]]] = {}
            for key, v in self.vector(node.args[1], t).items():
                labels = dict(_drop_name(key))
                le = labels.pop("le")
                groups.setdefault(labels_of(labels), []).append((float(le), v))
            return {k: bucket_quantile(q, b) for k, b in groups.items()}
        if name == "absent":
            (arg,) = node.args
            if self.vector(arg, t):
                return {}
            labels = {}
            if arg.kind == "selector":
                labels = {lbl: v for lbl, op, v in arg.opts["matchers"] if op == "=" and lbl != "__name__"}
            return {labels_of(labels): 1.0}
        raise Unsupported(f"function {name}()")

    def aggregate(self, node: Node, t: float) -> Vector:
        by = node.opts["by"]
        groups: dict[Labels, list[float]] = {}
        for key, v in self.vector(node.args[0], t).items():
            labels = dict(key)
            groups.setdefault(labels_of({b: labels[b] for b in by if b in labels}), []).append(v)
        fold: dict[str, Callable[[list[float]], float]] = {
            "sum": lambda xs: float(sum(xs)),
            "max": max,
            "min": min,
            "count": lambda xs: float(len(xs)),
            "avg": lambda xs: sum(xs) / len(xs),
        }
        return {k: fold[node.value](vs) for k, vs in groups.items()}

    def binary(self, node: Node, t: float) -> Vector | float:
        op, opts = node.value, node.opts
        left, right = self.eval(node.args[0], t), self.eval(node.args[1], t)
        if isinstance(left, float) and isinstance(right, float):
            if op in COMPARISONS:
                raise Unsupported("a comparison of two scalars (needs bool)")
            return _arith(op, left, right)
        if isinstance(left, float) or isinstance(right, float):
            if op in ("and", "or", "unless"):
                raise Unsupported(f"{op} with a scalar")
            out: Vector = {}
            vec, scalar = (right, left) if isinstance(left, float) else (left, right)
            assert isinstance(vec, dict) and isinstance(scalar, float)
            for key, v in vec.items():
                a, b = (scalar, v) if isinstance(left, float) else (v, scalar)
                if op in COMPARISONS:
                    if _compare(op, a, b):
                        out[key] = v
                else:
                    out[_drop_name(key)] = _arith(op, a, b)
            return out
        return self.vector_match(op, opts, left, right)

    def vector_match(self, op: str, opts: dict[str, Any], left: Vector, right: Vector) -> Vector:
        def signature(key: Labels) -> Labels:
            labels = dict(_drop_name(key))
            if opts.get("match") == "on":
                return labels_of({n: labels.get(n, "") for n in opts["labels"]})
            ignored = set(opts.get("labels", [])) if opts.get("match") == "ignoring" else set()
            return labels_of({k: v for k, v in labels.items() if k not in ignored})

        if op in ("and", "unless"):
            sigs = {signature(k) for k in right}
            keep = op == "and"
            return {k: v for k, v in left.items() if (signature(k) in sigs) == keep}
        if op == "or":
            sigs = {signature(k) for k in left}
            return {**left, **{k: v for k, v in right.items() if signature(k) not in sigs}}
        group = opts.get("group")
        if group == "group_right":
            raise Unsupported("group_right")
        by_sig: dict[Labels, tuple[Labels, float]] = {}
        for key, v in right.items():
            sig = signature(key)
            if sig in by_sig:
                raise AssertionError(f"many-to-many matching: {sig} twice on the right of {op}")
            by_sig[sig] = (key, v)
        out: Vector = {}
        seen: set[Labels] = set()
        for key, a in left.items():
            sig = signature(key)
            if sig not in by_sig:
                continue
            if group is None and sig in seen:
                raise AssertionError(f"many-to-one matching without group_left: {sig} twice on the left of {op}")
            seen.add(sig)
            rkey, b = by_sig[sig]
            labels = dict(key) if op in COMPARISONS else dict(_drop_name(key))
            if group is None and opts.get("match") == "on":  # one-to-one keeps only the matched labels
                labels = {k: v for k, v in labels.items() if k in opts["labels"] or k == "__name__"}
            elif group is None and opts.get("match") == "ignoring":
                labels = {k: v for k, v in labels.items() if k not in opts["labels"]}
            for extra in opts.get("include", []):
                labels[extra] = dict(rkey).get(extra, "")
            if op in COMPARISONS:
                if _compare(op, a, b):
                    out[labels_of(labels)] = a
            else:
                out[labels_of(labels)] = _arith(op, a, b)
        return out


def _arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b else (math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a))
    if op == "%":
        return math.fmod(a, b) if b else math.nan
    raise Unsupported(f"operator {op}")


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "==": a == b,
        "!=": a != b,
        ">": a > b,
        "<": a < b,
        ">=": a >= b,
        "<=": a <= b,
    }[op]


# --- alerting --------------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """An alert's state at each evaluation: the label sets pending and firing."""

    states: list[tuple[float, dict[Labels, str]]]

    def firing(self, t: float) -> list[dict[str, str]]:
        return [dict(k) for k, s in self.at(t).items() if s == "firing"]

    def at(self, t: float) -> dict[Labels, str]:
        last: dict[Labels, str] = {}
        for ts, state in self.states:
            if ts > t:
                break
            last = state
        return last

    def first_firing(self) -> float | None:
        return next((ts for ts, s in self.states if "firing" in s.values()), None)

    def resolved_after(self, t: float) -> float | None:
        """The first evaluation after ``t`` at which nothing fires."""
        return next((ts for ts, s in self.states if ts > t and "firing" not in s.values()), None)


def run_alert(store: Store, expr: str, for_s: float, start: float, end: float) -> Timeline:
    """Prometheus's alerting loop: evaluate ``expr`` every EVAL_INTERVAL_S; a label set is pending while the
    expression returns it and firing once it has for ``for_s``; it resolves at the first evaluation without it."""
    node, ev = parse(expr), Evaluator(store)
    active_since: dict[Labels, float] = {}
    states = []
    t = start
    while t <= end:
        result = ev.eval(node, float(t))
        if isinstance(result, float):
            raise Unsupported("an alert expression that returns a scalar")
        active_since = {k: active_since.get(k, t) for k in result}
        states.append((t, {k: "firing" if t - since >= for_s else "pending" for k, since in active_since.items()}))
        t += EVAL_INTERVAL_S
    return Timeline(states)
