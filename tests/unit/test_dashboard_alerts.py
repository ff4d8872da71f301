"""deploy/grafana/scimsync.json and deploy/prometheus/alerts.yml query only metrics the code exports, and every
alert links to a runbook entry that exists in the README."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml

from consumers.runtime.metrics import Metrics
from service.api import prometheus

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "scimsync.json"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes for every scrape target
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"}
_METRIC_NAME = re.compile(r"^scimsync_[a-z0-9_]+$")


def _strings(path: Path) -> list[str]:
    return [
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def exported() -> set[str]:
    """What the processes export: the API's registry, the consumers' rendered metrics, and the names the relay's
    code declares (as a name constant or in a `# TYPE name kind` line)."""
    names = set(prometheus.HELP)
    consumer = Metrics(group="g", topics=("t",))
    consumer.lag[("t", 0)] = 0
    names |= {line.split()[2] for line in consumer.render().splitlines() if line.startswith("# TYPE ")}
    for source in (ROOT / "service").rglob("*.py"):
        for text in _strings(source):
            names |= {m for m in re.findall(r"# TYPE (scimsync_[a-z0-9_]+)", text)}
            if _METRIC_NAME.match(text):
                names.add(text)
    return names


def queried(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or label names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"(?<![\w:])\d[\w.]*", " ", expr)  # numbers and durations (`offset 1h`)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def _series_names(name: str) -> set[str]:
    """A histogram `x` is queried as x_bucket, x_count, x_sum."""
    return {name, *(name.removesuffix(suffix) for suffix in ("_bucket", "_count", "_sum") if name.endswith(suffix))}


def _alert_rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_query_parser_finds_metrics_and_skips_functions_and_labels() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{status_class="5xx"}[5m]))) / b offset 1h'
    assert queried(expr) == {"a_bucket", "b"}


def _missing() -> set[str]:
    available = exported() | PROMETHEUS_OWN
    exprs = [str(rule["expr"]) for rule in _alert_rules()] + _dashboard_exprs()
    return {name for expr in exprs for name in queried(expr) if not (_series_names(name) & available)}


def test_every_metric_the_alerts_and_dashboard_query_is_exported() -> None:
    assert _missing() == set(), "queried but exported by no process"


def test_the_alerts_cover_what_the_issue_asks_and_each_links_to_its_runbook_entry() -> None:
    rules = _alert_rules()
    used = set().union(*(queried(str(rule["expr"])) for rule in rules))
    for needed in (
        "scimsync_outbox_oldest_unpublished_age_seconds",  # relay lag > 60 s
        "scimsync_consumer_dead_lettered_total",
        "scimsync_relay_parked_events",
        "scimsync_consumer_held_streams",  # a group held at a gap in its versions: "hold the stream and alert"
        "scimsync_consumer_rebuild_pending",  # a consumer waiting for an unfinished rebuild reports no lag
        "scimsync_consumer_lag",
        "scimsync_http_request_duration_seconds_count",  # 5xx rate
        "scimsync_dependency_up",  # Postgres / Kafka unreachable
    ):
        assert needed in used, needed
    headings = {
        _slug(line.lstrip("#").strip())
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        anchor = str(annotations["runbook_url"]).rpartition("#")[2]
        assert anchor == str(rule["alert"]).lower(), rule["alert"]
        assert anchor in headings, f"README has no heading for {rule['alert']}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
