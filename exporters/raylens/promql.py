"""Keeping the ``cluster`` label through PromQL: one rewrite for rules, alerts and dashboard queries.

Many clusters share one Prometheus, told apart by ``cluster`` (raylens.cluster). An expression keeps
clusters apart when every aggregation and every vector match carries that label; a dashboard query
shows one cluster when every selector matches it. Rather than writing ``cluster`` into hundreds of
hand-written expressions (and into every one added later), rules and dashboards pass through
``with_cluster``, which rewrites the expression token by token, keeping the author's spacing:

* ``by (a, b)`` and ``on (a, b)`` gain the label: ``by (cluster, a, b)``; ``without``, ``ignoring``,
  ``group_left``/``group_right`` lists and empty ``on ()``/``by ()`` (deliberately "everything")
  are left alone;
* with ``bare_aggregations``, an aggregation without a grouping (``sum(x)``) becomes
  ``sum by (cluster) (x)``;
* with ``matcher``, every vector selector gets it: ``up`` → ``up{cluster=~"$cluster"}``, unless the
  selector already matches on the label.

The rewrite is idempotent, so "is this expression already cluster-safe?" is ``with_cluster(e) == e``
(tests/test_promql.py checks the committed recording rules that way). It understands the PromQL that
rules and dashboards use, plus the two template syntaxes around them: ``%(name)s`` placeholders of
the alert definitions and Grafana's ``$var``/``${var}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from raylens.cluster import CLUSTER_LABEL

AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_GROUPINGS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<placeholder>%\([A-Za-z_][A-Za-z0-9_]*\)[sd]|%%)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punctuation>[(){}\[\],])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(expr: str) -> list[Token]:
    tokens = []
    for match in _TOKEN.finditer(expr):
        kind = match.lastgroup
        assert kind is not None
        tokens.append(Token(kind, match.group()))
    return tokens


def with_cluster(
    expr: str,
    *,
    label: str = CLUSTER_LABEL,
    matcher: str | None = None,
    group_by: bool = True,
    group_on: bool = True,
    bare_aggregations: bool = True,
    selects: Callable[[str], bool] | None = None,
) -> str:
    """``expr`` rewritten to keep ``label`` (see the module docstring); idempotent. ``selects``, when
    given, limits ``matcher`` to selectors of the metric names it accepts (bare ``{...}`` selectors,
    which name no metric, are then left alone)."""
    tokens = tokenize(expr)
    significant = [index for index, token in enumerate(tokens) if token.kind not in ("space", "comment")]
    position = {token_index: order for order, token_index in enumerate(significant)}
    inserts: dict[int, str] = {}  # token index -> text placed before that token

    def following(token_index: int, steps: int = 1) -> int | None:
        order = position[token_index] + steps
        return significant[order] if order < len(significant) else None

    def text(token_index: int | None) -> str:
        return tokens[token_index].text if token_index is not None else ""

    def closing(open_index: int) -> int:
        """Index of the bracket closing the one at ``open_index`` (or the last token)."""
        opening = tokens[open_index].text
        close = {"(": ")", "{": "}", "[": "]"}[opening]
        depth = 0
        for index in range(open_index, len(tokens)):
            if tokens[index].kind != "punctuation":
                continue
            if tokens[index].text == opening:
                depth += 1
            elif tokens[index].text == close:
                depth -= 1
                if depth == 0:
                    return index
        return len(tokens) - 1

    def add_matcher(brace_index: int | None, after_index: int) -> None:
        """Add ``matcher`` to the selector whose ``{`` is at ``brace_index`` (None: no braces)."""
        if brace_index is None:
            inserts[after_index + 1] = inserts.get(after_index + 1, "") + "{" + matcher + "}"
            return
        end = closing(brace_index)
        inner = [i for i in range(brace_index + 1, end) if tokens[i].kind not in ("space", "comment")]
        for order, index in enumerate(inner):
            is_name = order == 0 or tokens[inner[order - 1]].text == ","
            if is_name and tokens[index].text == label:
                return
        inserts[brace_index + 1] = matcher + ("," if inner else "")

    index_order = 0
    skip_until = -1
    while index_order < len(significant):
        index = significant[index_order]
        index_order += 1
        if index <= skip_until:
            continue
        token = tokens[index]
        next_index = following(index)
        if token.kind == "punctuation" and token.text == "[":
            skip_until = closing(index)  # range or subquery: durations and variables only
            continue
        if token.kind == "punctuation" and token.text == "{":
            if matcher is not None and selects is None:
                add_matcher(index, index)
            skip_until = closing(index)
            continue
        if token.kind != "identifier":
            continue
        word = token.text
        lowered = word.lower()
        if lowered in _GROUPINGS and text(next_index) == "(":
            assert next_index is not None
            end = closing(next_index)
            labels = [tokens[i].text for i in range(next_index + 1, end) if tokens[i].kind == "identifier"]
            wanted = (lowered == "by" and group_by) or (lowered == "on" and group_on)
            if wanted and labels and label not in labels:
                first = next(i for i in range(next_index + 1, end) if tokens[i].kind == "identifier")
                inserts[first] = inserts.get(first, "") + f"{label}, "
            skip_until = end
            continue
        if lowered in AGGREGATIONS and text(next_index) == "(":
            assert next_index is not None
            after = following(closing(next_index))
            if bare_aggregations and text(after).lower() not in ("by", "without"):
                spacer = "" if tokens[index + 1].kind == "space" else " "
                inserts[index + 1] = f" by ({label}){spacer}"
            continue
        if lowered in AGGREGATIONS and text(next_index).lower() in ("by", "without"):
            continue  # the grouping is handled when the loop reaches it
        if text(next_index) == "(" or lowered in _KEYWORDS:
            continue  # a function call or a keyword
        # A vector selector: a metric or recording-rule name, maybe with matchers.
        if matcher is not None and (selects is None or selects(word)):
            brace = next_index if text(next_index) == "{" else None
            add_matcher(brace, index)
        if text(next_index) == "{":
            assert next_index is not None
            skip_until = closing(next_index)
    return "".join(inserts.get(index, "") + token.text for index, token in enumerate(tokens)) + inserts.get(
        len(tokens), ""
    )


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.S)


def variable_query_with_cluster(query: str, matcher: str, label: str = CLUSTER_LABEL) -> str:
    """A Grafana Prometheus variable query (``label_values(sel, label)``, ``query_result(expr)``)
    whose selector matches ``matcher``; ``label_values(label)`` has no selector and stays as it is."""
    found = _LABEL_VALUES.match(query)
    if found:
        selector = with_cluster(
            found["selector"], label=label, matcher=matcher, group_by=False, bare_aggregations=False
        )
        return f"label_values({selector}, {found['label']})"
    found = _QUERY_RESULT.match(query)
    if found:
        expr = with_cluster(found["expr"], label=label, matcher=matcher, group_by=False, bare_aggregations=False)
        return f"query_result({expr})"
    return query
