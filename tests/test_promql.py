"""The PromQL rewrite that keeps `cluster` (raylens.promql), and the rules and dashboards it guards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.dashboards.build import iter_panels
from raylens.dashboards.validate import all_values, is_loki, substitute
from raylens.promql import tokenize, variable_query_with_cluster, with_cluster
from raylens.rules.render import GENERATED_HEADER
from raylens.stack.tools import find_tool

REPO = Path(__file__).resolve().parents[1]
MATCHER = 'cluster=~"$cluster"'


def dashboard_style(expr: str) -> str:
    return with_cluster(expr, matcher=MATCHER, group_by=False, bare_aggregations=False)


@pytest.mark.parametrize(
    ("expr", "rule", "dashboard"),
    [
        ("sum(rate(x[5m]))", "sum by (cluster) (rate(x[5m]))", 'sum(rate(x{cluster=~"$cluster"}[5m]))'),
        (
            "sum(x) by (a) / on (a) group_left (b) y",
            "sum(x) by (cluster, a) / on (cluster, a) group_left (b) y",
            'sum(x{cluster=~"$cluster"}) by (a) / on (cluster, a) group_left (b) y{cluster=~"$cluster"}',
        ),
        # Empty on() matches everything on purpose (`or on() vector(0)`); without/ignoring keep labels.
        ("x and on() vector(1)", "x and on() vector(1)", 'x{cluster=~"$cluster"} and on() vector(1)'),
        (
            "sum without (cpu) (rate(y[$__rate_interval])) unless ignoring (mode) z",
            "sum without (cpu) (rate(y[$__rate_interval])) unless ignoring (mode) z",
            'sum without (cpu) (rate(y{cluster=~"$cluster"}[$__rate_interval])) unless ignoring (mode) '
            'z{cluster=~"$cluster"}',
        ),
        ("topk(5, x)", "topk by (cluster) (5, x)", 'topk(5, x{cluster=~"$cluster"})'),
        ('x{cluster="a"}', 'x{cluster="a"}', 'x{cluster="a"}'),
        ('{__name__=~"a.*"}', '{__name__=~"a.*"}', '{cluster=~"$cluster",__name__=~"a.*"}'),
        (
            'label_replace(x, "dst", "$1", "src", "(sum)(x)")',
            'label_replace(x, "dst", "$1", "src", "(sum)(x)")',
            'label_replace(x{cluster=~"$cluster"}, "dst", "$1", "src", "(sum)(x)")',
        ),
        # Alert templates: %(name)s placeholders pass through untouched.
        (
            "max by (node_id) (up{%(exporter_selector)s}) > %(threshold)s / 100",
            "max by (cluster, node_id) (up{%(exporter_selector)s}) > %(threshold)s / 100",
            'max by (node_id) (up{cluster=~"$cluster",%(exporter_selector)s}) > %(threshold)s / 100',
        ),
        (
            "x offset 1h30m > bool 0 and time() - y @ end() > 1e3",
            "x offset 1h30m > bool 0 and time() - y @ end() > 1e3",
            'x{cluster=~"$cluster"} offset 1h30m > bool 0 and time() - y{cluster=~"$cluster"} @ end() > 1e3',
        ),
    ],
)
def test_rewrites(expr: str, rule: str, dashboard: str) -> None:
    assert with_cluster(expr) == rule
    assert dashboard_style(expr) == dashboard


def test_variable_queries() -> None:
    assert (
        variable_query_with_cluster('label_values(x{p=~"$p"}, user)', MATCHER)
        == 'label_values(x{cluster=~"$cluster",p=~"$p"}, user)'
    )
    assert variable_query_with_cluster("query_result(sum by (a) (x))", MATCHER) == (
        'query_result(sum by (a) (x{cluster=~"$cluster"}))'
    )
    assert variable_query_with_cluster("label_values(instance)", MATCHER) == "label_values(instance)"


# --- Open-ended expressions: a small PromQL grammar --------------------------------------------------

_names = st.sampled_from(["up", "x_total", "level:metric:rate5m", "ray_tasks"])
_labels = st.lists(st.sampled_from(["a", "job", "SessionName", "le", "cluster"]), min_size=0, max_size=3, unique=True)
_matchers = st.lists(
    st.tuples(
        st.sampled_from(["a", "job", "cluster", "b"]), st.sampled_from(["=", "!=", "=~"]), st.text("xyz$.", max_size=4)
    ),
    max_size=2,
)


@st.composite
def _selector(draw) -> str:
    matchers = ",".join(f'{name}{op}"{value}"' for name, op, value in draw(_matchers))
    text = draw(_names) + (f"{{{matchers}}}" if matchers or draw(st.booleans()) else "")
    return f"rate({text}[5m])" if draw(st.booleans()) else text


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        aggregation = st.tuples(
            st.sampled_from(["sum", "max", "count", "avg"]),
            st.sampled_from(["", "by", "without"]),
            _labels,
            inner,
            st.booleans(),
        ).map(
            lambda t: (
                f"{t[0]}({t[3]}) {t[1]} ({', '.join(t[2])})"
                if t[1] and t[4]
                else f"{t[0]} {t[1]} ({', '.join(t[2])}) ({t[3]})"
                if t[1]
                else f"{t[0]}({t[3]})"
            )
        )
        binary = st.tuples(
            inner, st.sampled_from(["/", "and", "or", "*"]), st.sampled_from(["", "on", "ignoring"]), _labels, inner
        ).map(lambda t: f"{t[0]} {t[1]} {t[2]} ({', '.join(t[3])}) {t[4]}" if t[2] else f"{t[0]} {t[1]} {t[4]}")
        function = inner.map(lambda e: f"histogram_quantile(0.9, {e})")
        return aggregation | binary | function

    return st.recursive(_selector(), extend, max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(_expressions())
def test_rewrite_is_idempotent_and_only_inserts(expr: str) -> None:
    for rewrite in (with_cluster, dashboard_style):
        once = rewrite(expr)
        assert rewrite(once) == once
        # Only insertions: every original token is still there, in order.
        remaining = iter(token.text for token in tokenize(once))
        assert all(any(token.text == seen for seen in remaining) for token in tokenize(expr))
    rule = with_cluster(expr)
    tokens = [token.text for token in tokenize(rule) if token.kind != "space"]
    for index, word in enumerate(tokens[:-1]):
        if word in ("by", "on") and tokens[index + 1] == "(" and tokens[index + 2] != ")":
            assert "cluster" in tokens[index + 2 : tokens.index(")", index)], rule


# --- What the rewrite guards ------------------------------------------------------------------------


def _recording_rules() -> list[tuple[str, str]]:
    rules = []
    for path in sorted((REPO / "recording-rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [(rule["record"], rule["expr"]) for rule in group["rules"]]
    return rules


def test_recording_rules_keep_the_cluster_label() -> None:
    """Every level but `org:` keeps `cluster`; a new rule that drops it fails here with the fix."""
    unsafe = [
        f"{record}: write\n  {with_cluster(expr)}"
        for record, expr in _recording_rules()
        if not record.startswith("org:") and with_cluster(expr) != expr
    ]
    assert not unsafe, "\n".join(unsafe)


def test_generated_alerts_keep_the_cluster_label() -> None:
    for path in sorted((REPO / "alerting-rules").glob("*.yml")):
        assert path.read_text().startswith(GENERATED_HEADER)
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert with_cluster(rule["expr"]) == rule["expr"], rule["alert"]


def test_every_dashboard_query_matches_the_cluster_variable() -> None:
    for path in sorted((REPO / "provisioning" / "grafana" / "dashboards").glob("*/*.json")):
        dashboard = json.loads(path.read_text())
        assert "cluster" in [variable["name"] for variable in dashboard["templating"]["list"]], path
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                if is_loki(target):
                    continue  # LogQL: log streams carry no cluster label
                assert dashboard_style(target["expr"]) == target["expr"], (path.name, panel["title"])
                assert "$cluster" in target["expr"] or "{" not in target["expr"], (path.name, target["expr"])


def test_rewritten_expressions_parse(tmp_path: Path) -> None:
    """Every committed rule and dashboard query, rewritten both ways, through promtool."""
    promtool = find_tool("promtool")
    assert promtool, "promtool is not installed; run scripts/setup.sh"
    exprs = [expr for _, expr in _recording_rules()]
    for path in sorted((REPO / "alerting-rules").glob("*.yml")):
        exprs += [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    for path in sorted((REPO / "provisioning" / "grafana" / "dashboards").glob("*/*.json")):
        dashboard = json.loads(path.read_text())
        values = all_values(dashboard)
        exprs += [
            substitute(target["expr"], values)
            for panel in iter_panels(dashboard)
            for target in panel.get("targets", [])
            if not is_loki(target)  # LogQL, which neither promtool nor the rewrite is for
        ]
    rewritten = [with_cluster(expr) for expr in exprs]
    rewritten += [dashboard_style(expr).replace("$cluster", ".*") for expr in exprs]
    rules = {"groups": [{"name": "check", "rules": [{"record": f"r:{i}", "expr": e} for i, e in enumerate(rewritten)]}]}
    path = tmp_path / "rewritten.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
