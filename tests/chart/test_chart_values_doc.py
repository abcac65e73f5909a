"""Every value is commented, typed by the schema and listed in the chart README, and those three agree."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.chart.chart_values_doc import BEGIN, END, comments_by_path, replace_table, rows, table
from tests.helpers.chart import CHART

VALUES_TEXT = (CHART / "values.yaml").read_text()
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def test_comment_parser_reads_nested_keys_and_skips_list_items() -> None:
    text = (
        "# header, not a doc comment\n\n"
        "# -- top\n# continued\ntop:\n"
        "  # -- a leaf\n  leaf: 1\n"
        "  # -- a list of maps\n  items:\n    - name: x\n      value: 2\n"
        "  plain: {}\n"
        "# -- second\nsecond: 'a: b'\n"
    )
    assert comments_by_path(text) == {
        ("top",): "top continued",
        ("top", "leaf"): "a leaf",
        ("top", "items"): "a list of maps",
        ("top", "plain"): None,
        ("second",): "second",
    }


def test_every_value_has_a_doc_comment() -> None:
    _, missing = rows(VALUES_TEXT)
    assert not missing, f"values without a `# --` comment: {missing}"


def test_readme_value_table_is_up_to_date() -> None:
    readme = (CHART / "README.md").read_text()
    assert BEGIN in readme and END in readme
    expected = replace_table(readme, table(VALUES_TEXT))
    assert readme == expected, "the README value table is stale: run `python tests/chart/chart_values_doc.py --write`"


def test_readme_table_lists_every_leaf_value() -> None:
    readme = (CHART / "README.md").read_text()
    documented = {r.path for r in rows(VALUES_TEXT)[0]}

    def leaves(node: dict[str, Any], prefix: str = "") -> set[str]:
        out = set()
        for k, v in node.items():
            path = f"{prefix}{k}"
            out.add(path)
            if isinstance(v, dict) and f"| `{path}` | object |  |" in readme:
                out |= leaves(v, path + ".")
        return out

    values = yaml.safe_load(VALUES_TEXT)
    assert leaves(values) <= documented
    for path in documented:
        assert f"| `{path}` |" in readme


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**SCHEMA["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _schema_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    node = _resolve(node)
    out = set()
    for key, sub in node.get("properties", {}).items():
        out.add((*prefix, key))
        out |= _schema_paths(sub, (*prefix, key))
    return out


def _value_paths(node: Any, schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths of values.yaml keys wherever the schema describes keys by name (not free-form maps)."""
    schema = _resolve(schema)
    if not isinstance(node, dict) or "properties" not in schema:
        return set()
    out = set()
    for key, value in node.items():
        out.add((*prefix, key))
        out |= _value_paths(value, schema["properties"].get(key, {}), (*prefix, key))
    return out


def test_schema_and_values_describe_the_same_keys() -> None:
    values = yaml.safe_load(VALUES_TEXT)
    in_schema = _schema_paths(SCHEMA) - {("global",)}
    in_values = _value_paths(values, SCHEMA)
    assert in_values - in_schema == set(), "values the schema does not know (helm lint would reject them)"
    assert in_schema - in_values == set(), "schema keys without a default (and so without a README row)"


def test_schema_forbids_unknown_keys_on_every_described_object() -> None:
    def walk(node: dict[str, Any], where: str) -> None:
        node = _resolve(node)
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{where or '(root)'} accepts unknown keys"
            for key, sub in node["properties"].items():
                walk(sub, f"{where}.{key}" if where else key)

    walk(SCHEMA, "")
