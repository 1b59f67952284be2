"""`make deploy-check`: the deployment files are what Kubernetes, Compose and Prometheus accept.

- every kustomization (the base, each overlay) builds with `kubectl kustomize`, and each object
  passes `kubernetes-validate --strict` against KUBERNETES_VERSION; the custom resources
  (ServiceMonitor, PrometheusRule, RabbitmqCluster, CloudNativePG's Cluster), which that tool has
  no schema for, pass their operators' CRD schemas (tests/deploy/crd-schemas) with unknown fields
  refused, as --strict does;
- deploy/docker-compose.yml validates against the Compose specification;
- `promtool check rules` and `promtool test rules` on deploy/prometheus;
- the monitoring component's PrometheusRule is rules.yml as generated, and every query of the
  Grafana dashboard is PromQL that promtool accepts.

Needs kubectl (with its kustomize) and promtool on PATH (Debian: `apt-get install prometheus`).

`python deploy/check.py prometheus-rule` prints the PrometheusRule generated from rules.yml
(`make k8s-rules` writes it into the monitoring component).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = ("base", "overlays/production", "overlays/sandbox")
# The Kubernetes version the manifests are checked against (kept to one that the supported
# managed offerings still run).
KUBERNETES_VERSION = "1.31.0"
CRD_SCHEMAS = ROOT / "tests" / "deploy" / "crd-schemas"
BIN = Path(sys.executable).parent
RULES = DEPLOY / "prometheus" / "rules.yml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
GENERATED = "# Generated from deploy/prometheus/rules.yml by `make k8s-rules`: edit that instead.\n"


class CheckFailed(Exception):
    pass


def run(*argv: str | Path, quiet: bool = False) -> str:
    """Run a command; its output is printed, and a non-zero exit fails the check."""
    command = [str(part) for part in argv]
    print("$ " + " ".join(_relative(part) for part in command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    output = done.stdout + done.stderr
    if output.strip() and not quiet:
        print(output.rstrip())
    if done.returncode != 0:
        if quiet:
            print(output.rstrip())
        raise CheckFailed(f"{command[0]} exited {done.returncode}")
    return done.stdout


def _relative(part: str) -> str:
    return part.replace(str(ROOT) + "/", "")


def tool(name: str, hint: str) -> str:
    found = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if found is None:
        raise CheckFailed(f"{name} not found: {hint}")
    return found


# ---------------------------------------------------------------------------------- Kubernetes


def crd_schemas() -> dict[tuple[str, str], Path]:
    """(apiVersion, kind) -> the vendored CRD schema, made strict, in a temporary file."""
    found = {}
    for path in sorted(CRD_SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text("utf-8"))
        crd = schema["x-mensajero-crd"]
        found[(crd["apiVersion"], crd["kind"])] = path
    return found


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the fields (as --strict does for
    built-in kinds); parts marked x-kubernetes-preserve-unknown-fields stay open. Patterns are
    Go's (RE2): an inline flag after ``^`` moves before it, where Python's re wants it."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if isinstance(closed.get("pattern"), str):
        closed["pattern"] = re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", closed["pattern"])
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


def documents(text: str) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(text):
        if document:
            yield document


def check_kubernetes(work: Path) -> None:
    kubectl = tool("kubectl", "install kubectl (it carries kustomize)")
    validate = tool("kubernetes-validate", "run `make install`")
    check_jsonschema = tool("check-jsonschema", "run `make install`")
    schemas = crd_schemas()
    strict_schemas: dict[tuple[str, str], Path] = {}
    for key, path in schemas.items():
        closed = work / f"strict-{path.name}"
        closed.write_text(json.dumps(strict(json.loads(path.read_text("utf-8")))), "utf-8")
        strict_schemas[key] = closed
    for name in KUSTOMIZATIONS:
        built = run(kubectl, "kustomize", DEPLOY / "k8s" / name, quiet=True)
        builtin: list[dict[str, Any]] = []
        custom: list[dict[str, Any]] = []
        for document in documents(built):
            key = (document["apiVersion"], document["kind"])
            (custom if key in strict_schemas else builtin).append(document)
        slug = name.replace("/", "-")
        plain = work / f"{slug}.yaml"
        plain.write_text(yaml.safe_dump_all(builtin, sort_keys=False), "utf-8")
        output = run(validate, "--strict", "--quiet", "-k", KUBERNETES_VERSION, plain)
        if "Couldn't find schema" in output or "failed" in output.lower():
            raise CheckFailed(f"{name}: kubernetes-validate found an object it cannot check")
        print(f"{name}: {len(builtin)} objects pass kubernetes-validate --strict")
        for index, document in enumerate(custom):
            key = (document["apiVersion"], document["kind"])
            one = work / f"{slug}-{index}-{document['kind'].lower()}.json"
            one.write_text(json.dumps(document), "utf-8")
            run(
                check_jsonschema,
                "--regex-variant",
                "python",
                "--schemafile",
                strict_schemas[key],
                one,
                quiet=True,
            )
            kind, object_name = document["kind"], document["metadata"]["name"]
            print(f"{name}: {kind}/{object_name} passes its CRD schema")


# ---------------------------------------------------------------------------------- Compose


def check_compose() -> None:
    check_jsonschema = tool("check-jsonschema", "run `make install`")
    run(check_jsonschema, "--builtin-schema", "vendor.compose-spec", DEPLOY / "docker-compose.yml")


# ---------------------------------------------------------------------------------- Prometheus


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the longer PromQL expressions) as literal blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule() -> str:
    """rules.yml as a PrometheusRule, for the Prometheus Operator."""
    rules = yaml.safe_load(RULES.read_text("utf-8"))
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "mensajero",
            # What kube-prometheus's Prometheus selects by default; change it to your release's.
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return GENERATED + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100)


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables given values."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], grafana_to_promql(target["expr"])))
    return found


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$__range", "1h")


def check_prometheus(work: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus (Debian's package has promtool)")
    run(promtool, "check", "rules", RULES)
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    run(promtool, "test", "rules", *tests)

    generated = PROMETHEUS_RULE.relative_to(ROOT)
    if PROMETHEUS_RULE.read_text("utf-8") != prometheus_rule():
        raise CheckFailed(f"{generated} differs from rules.yml: run make k8s-rules")
    print(f"{generated} is rules.yml as generated")

    dashboard = json.loads((DEPLOY / "grafana" / "mensajero.json").read_text("utf-8"))
    queries = dashboard_queries(dashboard)
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": expr}
                    for index, (_title, expr) in enumerate(queries)
                ],
            }
        ]
    }
    queries_file = work / "dashboard-queries.yml"
    queries_file.write_text(yaml.safe_dump(as_rules), "utf-8")
    run(promtool, "check", "rules", queries_file)
    print(f"deploy/grafana/mensajero.json: {len(queries)} queries are valid PromQL")


def main(argv: list[str]) -> int:
    if argv[1:] == ["prometheus-rule"]:
        sys.stdout.write(prometheus_rule())
        return 0
    with tempfile.TemporaryDirectory(prefix="mensajero-deploy-check-") as directory:
        work = Path(directory)
        try:
            check_kubernetes(work)
            check_compose()
            check_prometheus(work)
        except CheckFailed as error:
            print(f"deploy-check FAILED: {error}", file=sys.stderr)
            return 1
    print("deploy-check: all passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
