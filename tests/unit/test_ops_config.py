"""What ships for operators outside the code: Prometheus alerting rules (checked and unit-tested by promtool,
from Debian's prometheus package), the Grafana dashboard and the KEDA example (their queries name metrics that
exist, and parse as PromQL)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make test installs it)")


def exported_metric_names() -> set[str]:
    """Every series name videogen exports: the event metrics' (with their histogram and counter suffixes) and
    the state gauges' (read off a collection)."""
    from prometheus_client import Counter, Histogram

    from videogen import metrics

    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Histogram):
            names |= {value._name + s for s in ("_bucket", "_count", "_sum")}
    source = (Path(metrics.__file__).with_name("metrics_state.py")).read_text()
    names |= set(re.findall(r'GaugeMetricFamily\(\s*"(videogen_\w+)"', source))
    return names


def queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "videogen.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    keda = yaml.safe_load((DEPLOY / "keda" / "scaledobject.yaml").read_text())
    exprs += [t["metadata"]["query"] for t in keda["spec"]["triggers"]]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    return exprs


def test_the_dashboard_has_what_grafana_needs():
    dashboard = json.loads((DEPLOY / "grafana" / "videogen.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for p in dashboard["panels"]:
        assert p["type"] == "timeseries" and p["title"] and set(p["gridPos"]) == {"h", "w", "x", "y"}
        assert p["targets"] and all(t["refId"] and t["expr"] for t in p["targets"])


def test_every_query_names_metrics_videogen_exports():
    names = exported_metric_names()
    assert {"videogen_transitions_total", "videogen_wait_seconds_bucket", "videogen_runners_needed"} <= names
    for expr in queries():
        used = set(re.findall(r"\bvideogen_\w+", expr))
        assert used and used <= names, (expr, used - names)


@needs_promtool
def test_promtool_checks_the_alerting_rules_and_their_unit_tests():
    check = subprocess.run([PROMTOOL, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([PROMTOOL, "test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")],
                          capture_output=True, text=True)  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_and_keda_query(tmp_path):
    rules = {
        "groups": [{"name": "queries", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(queries())]}]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
