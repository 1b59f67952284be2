"""Print deploy/prometheus/rules.yml as a PrometheusRule (for the Prometheus Operator).

`make k8s-rules` writes it to deploy/k8s/components/monitoring/prometheusrule.yaml;
`make deploy-check` fails when the checked-in file differs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

RULES = Path(__file__).with_name("rules.yml")
HEADER = "# Generated from deploy/prometheus/rules.yml by `make k8s-rules`: edit that instead.\n"


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "mensajero",
            # What kube-prometheus's Prometheus selects by default; change it to your release's.
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {"groups": rules["groups"]},
    }


def render() -> str:
    rules = yaml.safe_load(RULES.read_text("utf-8"))
    body = yaml.dump(prometheus_rule(rules), Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + body


if __name__ == "__main__":
    sys.stdout.write(render())
