"""What the deployment tests share: the repository's files, the built overlays, the services'
metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = ("gateway", "sender", "handoff", "notifier")


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"])


@cache
def built(kustomization: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize deploy/k8s/<kustomization>`` builds."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to build the overlays"
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / kustomization)],
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def objects(kustomization: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in built(kustomization) if d["kind"] == kind}


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return loaded


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rules()["groups"] for r in g["rules"] if "alert" in r}


def recorded() -> set[str]:
    return {r["record"] for g in rules()["groups"] for r in g["rules"] if "record" in r}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana" / "mensajero.json").read_text())
    return loaded


@cache
def exported_metrics() -> frozenset[str]:
    """Every sample name the four services can export (their registries, as built)."""
    from prometheus_client import CollectorRegistry

    from gateway.metrics import Metrics as GatewayMetrics
    from handoff.metrics import HandoffMetrics
    from notifier.metrics import Metrics as NotifierMetrics
    from sender.metrics import SenderMetrics
    from shared.ops import WORK_QUEUE_GAUGE, queue_depth_gauge, service_registry

    registry: CollectorRegistry = service_registry("all")
    GatewayMetrics(registry)
    SenderMetrics(registry)
    HandoffMetrics(registry)
    NotifierMetrics(registry)
    queue_depth_gauge(registry, "mensajero_dead_letter_messages", "as in shared.ops")
    queue_depth_gauge(registry, WORK_QUEUE_GAUGE, "as in shared.ops")
    names = {"up"}
    for family in registry.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
            "info": ("_info",),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return frozenset(names)


_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_FUNCTION_OR_KEYWORD = {"by", "without", "on", "ignoring", "or", "and", "unless", "bool", "offset"}


def metric_names(promql: str) -> set[str]:
    """The metric (and recording rule) names a query reads."""
    text = re.sub(r'"[^"]*"', '""', promql)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = _CLAUSE.sub("", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    found = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        following = text[match.end() :].lstrip()[:1]
        if following == "(" or name in _FUNCTION_OR_KEYWORD or name.startswith("$"):
            continue
        if re.fullmatch(r"\d.*|e\d+|inf|nan|Inf|NaN", name):
            continue
        found.add(name)
    return found
