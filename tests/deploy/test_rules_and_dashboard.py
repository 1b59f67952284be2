"""The alert rules, their unit tests, the runbook and the dashboard agree with each other and with
the metrics the services export (promtool itself runs in `make deploy-check`)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.support import (
    DEPLOY,
    ROOT,
    alerts,
    dashboard,
    exported_metrics,
    metric_names,
    recorded,
    rules,
)

REQUIRED_ALERTS = {
    "MensajeroGatewayDown",
    "MensajeroGatewayErrors",
    "MensajeroEventsUnrouted",
    "MensajeroDeadLetters",
    "MensajeroSendFailures",
    "MensajeroCircuitOpen",
    "MensajeroSendQueueAge",
    "MensajeroPacingMissedSlots",
    "MensajeroMetaRateLimited",
    "MensajeroHandoffWaitTooLong",
    "MensajeroHandoffNoAgent",
    "MensajeroMailFailing",
    "MensajeroMailAddressesSuppressed",
    "MensajeroWhatsAppAccountRestricted",
    "MensajeroTemplatePaused",
}
REQUIRED_ROWS = {
    "Webhooks",
    "Events by type",
    "Sends by kind",
    "Sent → delivered → read",
    "Failures by error code",
    "Pacing and circuits",
    "Queues and dead letters",
    "Handoff",
    "Mail",
}
# Broker- or database-wide gauges: the same on every replica, never summed.
SHARED_GAUGES = (
    "handoff_waiting",
    "handoff_active",
    "mensajero_dead_letter_messages",
    "gateway_unrouted_messages",
    "whatsapp_account_restricted",
    "whatsapp_template_status",
)


def test_every_alert_the_issue_names_exists_with_severity_and_annotations() -> None:
    found = alerts()
    assert set(found) >= REQUIRED_ALERTS
    for name, rule in found.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}", name


def test_every_alert_has_a_runbook_section_and_every_section_an_alert() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text("utf-8")
    sections = set(re.findall(r"^## (\S+)$", runbook, flags=re.MULTILINE))
    assert sections == set(alerts())
    for section in re.split(r"^## ", runbook, flags=re.MULTILINE)[1:]:
        for part in ("**Meaning.**", "**Confirm.**", "**Act.**"):
            assert part in section, (section.splitlines()[0], part)


def _unit_tests() -> list[dict[str, Any]]:
    found = []
    for path in sorted((DEPLOY / "prometheus" / "tests").glob("*.yml")):
        suite = yaml.safe_load(path.read_text("utf-8"))
        assert suite["rule_files"] == ["../rules.yml"]
        for test in suite["tests"]:
            found.extend(test.get("alert_rule_test", []))
    return found


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = _unit_tests()
    for name in alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} is never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{name} is never tested silent"


def test_rules_and_dashboard_read_only_metrics_the_services_export() -> None:
    known = exported_metrics() | recorded()
    for group in rules()["groups"]:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, (rule.get("alert") or rule.get("record"), unknown)
    for title, expr in _dashboard_queries():
        unknown = metric_names(expr) - known
        assert not unknown, (title, unknown)


def test_the_metric_name_reader_finds_names_and_skips_labels_and_functions() -> None:
    expr = (
        'sum by (endpoint) (rate(gateway_webhook_requests_total{outcome=~"a|b"}[5m]))'
        " / on (x) group_left () mensajero:gateway_webhook_requests:rate5m or vector(0)"
    )
    assert metric_names(expr) == {
        "gateway_webhook_requests_total",
        "mensajero:gateway_webhook_requests:rate5m",
    }
    assert "whatsapp_typo_total" in metric_names("max(whatsapp_typo_total)")
    assert "whatsapp_typo_total" not in exported_metrics()


def test_shared_gauges_are_combined_with_max() -> None:
    expressions = [expr for _title, expr in _dashboard_queries()]
    expressions += [r["expr"] for g in rules()["groups"] for r in g["rules"]]
    for expr in expressions:
        for gauge in SHARED_GAUGES:
            for match in re.finditer(rf"\b{gauge}\b", expr):
                before = expr[: match.start()]
                assert re.search(r"\bmax\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*$", before), (
                    gauge,
                    expr,
                )


def _dashboard_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_has_its_rows_and_a_datasource_variable() -> None:
    board = dashboard()
    rows = {panel["title"] for panel in board["panels"] if panel["type"] == "row"}
    assert rows >= REQUIRED_ROWS
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    for gauge in ("handoff_waiting", "handoff_active"):
        (panel,) = [
            p for p in board["panels"] if any(gauge in t["expr"] for t in p.get("targets", []))
        ]
        assert "Database-wide" in panel["description"]


def test_the_prometheus_rule_of_the_monitoring_component_is_rules_yml() -> None:
    component = DEPLOY / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
    rule = yaml.safe_load(component.read_text("utf-8"))
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules()["groups"]
