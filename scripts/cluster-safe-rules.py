#!/usr/bin/env python3
"""Rewrite recording-rules/*.yml in place so every aggregation and vector match keeps `cluster`
(raylens.promql.with_cluster), touching only the expressions and keeping comments and layout.

`org:` records sum over every cluster on purpose and are left alone. tests/test_promql.py fails on a
recording rule that drops the label; run this, review the diff, commit.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from raylens.promql import with_cluster

RULES = Path(__file__).resolve().parents[1] / "recording-rules"


def expression_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of every `expr:` value, except those of `org:` records."""
    spans = []
    for group in yaml.compose(text).value[0][1].value:
        for key, value in group.value:
            if key.value != "rules":
                continue
            for rule in value.value:
                fields = {field.value: node for field, node in rule.value}
                if "expr" in fields and not str(fields.get("record", yaml.ScalarNode("", "")).value).startswith("org:"):
                    spans.append((fields["expr"].start_mark.index, fields["expr"].end_mark.index))
    return spans


def main() -> None:
    for path in sorted(RULES.glob("*.yml")):
        text = path.read_text()
        new = text
        for start, end in sorted(expression_spans(text), reverse=True):
            new = new[:start] + with_cluster(new[start:end]) + new[end:]
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")


if __name__ == "__main__":
    main()
