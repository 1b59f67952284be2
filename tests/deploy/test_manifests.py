"""What the Kubernetes overlays and the Compose file promise a platform team, read from what
`kubectl kustomize` builds (kubernetes-validate and the CRD schemas run in `make deploy-check`)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from deploy.check import crd_schemas, strict
from tests.deploy.support import DEPLOY, ROOT, SERVICES, built, objects, project_version

OVERLAYS = ("overlays/production", "overlays/sandbox")
# HTTP server, then each consumer, drain one after the other (SHUTDOWN_GRACE_SECONDS each).
CONSUMERS = {"gateway": 0, "sender": 2, "handoff": 1, "notifier": 1}


def is_config(document: dict[str, Any]) -> bool:
    """The services' ConfigMap (the sandbox also has the broker's plugins)."""
    return bool(
        document["kind"] == "ConfigMap"
        and document["metadata"]["name"].startswith("mensajero-config")
    )


def grace(kustomization: str) -> float:
    (config,) = [d for d in built(kustomization) if is_config(d)]
    return float(config["data"]["SHUTDOWN_GRACE_SECONDS"])


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_each_service_runs_hardened_probed_and_bounded(kustomization: str) -> None:
    deployments = objects(kustomization, "Deployment")
    for name in SERVICES:
        spec = pod(deployments[name])
        (container,) = spec["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] in {"/healthz", "/readyz"}, (name, probe)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and isinstance(context["runAsUser"], int)
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["topologySpreadConstraints"]
        secrets = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
        assert len(secrets) == 1 and secrets[0].startswith("mensajero-secrets"), secrets
        image = container["image"]
        assert image.endswith(f":{project_version()}"), image


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_termination_grace_outlasts_each_drain(kustomization: str) -> None:
    deployments = objects(kustomization, "Deployment")
    seconds = grace(kustomization)
    for name in SERVICES:
        spec = pod(deployments[name])
        pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop")
        pause = float(pre_stop["exec"]["command"][1]) if pre_stop else 0.0
        drain = pause + seconds * (CONSUMERS[name] + 1)
        assert spec["terminationGracePeriodSeconds"] > drain, (name, drain)
    gateway = pod(deployments["gateway"])["containers"][0]
    assert gateway["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_disruption_budgets_services_and_the_gateway_autoscaler(kustomization: str) -> None:
    budgets, services = (
        objects(kustomization, "PodDisruptionBudget"),
        objects(kustomization, "Service"),
    )
    for name in SERVICES:
        assert budgets[name]["spec"]["maxUnavailable"] == 1
        ports = {p["name"] for p in services[name]["spec"]["ports"]}
        assert "metrics" in ports, name
    (autoscaler,) = objects(kustomization, "HorizontalPodAutoscaler").values()
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "gateway"


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_only_the_gateway_is_open_and_metrics_only_to_monitoring(kustomization: str) -> None:
    policies = objects(kustomization, "NetworkPolicy")
    deny = policies["mensajero-default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "mensajero"}
    webhooks = policies["gateway-webhooks"]["spec"]
    assert webhooks["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "gateway"
    assert webhooks["ingress"] == [{"ports": [{"port": "http"}]}]
    (monitoring,) = policies["mensajero-metrics-from-monitoring"]["spec"]["ingress"]
    assert monitoring["ports"] == [{"port": "ops"}]
    (source,) = monitoring["from"]
    assert source == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }


def test_production_uses_the_operators_and_their_credentials() -> None:
    (rabbitmq,) = objects("overlays/production", "RabbitmqCluster").values()
    assert rabbitmq["spec"]["replicas"] == 3
    (postgres,) = objects("overlays/production", "Cluster").values()
    assert postgres["spec"]["instances"] == 3
    for name, deployment in objects("overlays/production", "Deployment").items():
        env = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in pod(deployment)["containers"][0]["env"]
        }
        assert env["RABBITMQ_URL"] == {
            "name": "mensajero-rabbitmq-default-user",
            "key": "connection_string",
        }, name
        assert env["DATABASE_URL"] == {"name": "mensajero-postgres-app", "key": "uri"}, name
    assert {"ServiceMonitor", "PrometheusRule"} <= {d["kind"] for d in built("overlays/production")}


def test_the_base_creates_no_secret_so_an_existing_one_is_used() -> None:
    assert not objects("base", "Secret")
    assert not objects("overlays/production", "Secret")


def test_the_sandbox_overlay_runs_the_whole_demo_in_its_namespace() -> None:
    everything = built("overlays/sandbox")
    assert {d["metadata"].get("namespace") for d in everything if d["kind"] != "Namespace"} == {
        "mensajero-sandbox"
    }
    deployments = objects("overlays/sandbox", "Deployment")
    assert set(deployments) == {*SERVICES, "sandbox", "ses"}
    assert set(objects("overlays/sandbox", "StatefulSet")) == {"rabbitmq", "postgres"}
    (config,) = [d for d in everything if is_config(d)]
    assert config["data"]["MENSAJERO_ENV"] == "sandbox"
    assert config["data"]["META_GRAPH_URL"] == "http://sandbox:8090"
    for deployment in deployments.values():
        assert deployment["spec"]["replicas"] == 1


@pytest.mark.parametrize("kustomization", ("base", *OVERLAYS))
def test_every_image_is_pinned(kustomization: str) -> None:
    for document in built(kustomization):
        template = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in template.get("containers", []):
            assert re.search(r":\d+\.\d+", container["image"]), container["image"]
    for document in built(kustomization):
        for key in ("image", "imageName"):
            image = document.get("spec", {}).get(key)
            if isinstance(image, str):
                assert re.search(r":\d+\.\d+", image), image


def test_the_strict_crd_check_refuses_an_unknown_field() -> None:
    """What `make deploy-check` runs on the custom resources can fail: a misspelt field."""
    (cluster,) = objects("overlays/production", "RabbitmqCluster").values()
    schema = strict(
        json.loads(crd_schemas()[("rabbitmq.com/v1beta1", "RabbitmqCluster")].read_text())
    )
    jsonschema.validate(cluster, schema)
    wrong = {**cluster, "spec": {**cluster["spec"], "replica": 3}}
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.validate(wrong, schema)


# ------------------------------------------------------------------------------- Compose


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text("utf-8"))
    return loaded


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match.group(1))


def test_compose_restarts_checks_and_drains_every_service() -> None:
    services = compose()["services"]
    assert services["rabbitmq"]["hostname"] == "rabbitmq"
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        assert "stop_grace_period" in service, name
    for name in SERVICES:
        service = services[name]
        shutdown = float(service["environment"]["SHUTDOWN_GRACE_SECONDS"])
        assert seconds(service["stop_grace_period"]) > shutdown * (CONSUMERS[name] + 1), name
        assert service["healthcheck"]["test"][-1].endswith("/readyz"), name
        assert service["env_file"] == [{"path": ".env", "required": True}]
        assert service["image"] == f"mensajero:{project_version()}"


def test_compose_has_no_url_or_password_of_its_own() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text("utf-8")
    assert not re.search(r"amqp://|postgres(ql)?://", text)
    for service in compose()["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if re.search("PASS|SECRET|TOKEN|_URL$", name) and name != "SANDBOX_WEBHOOK_URL":
                assert str(value).startswith("${"), (name, value)
    used = set(re.findall(r"\$\{(\w+)", text))
    for env_file in ("deploy/.env.example", "deploy/sandbox.env"):
        defined = set(re.findall(r"^(\w+)=", (ROOT / env_file).read_text(), flags=re.MULTILINE))
        assert used <= defined, (env_file, used - defined)
        assert {"RABBITMQ_URL", "DATABASE_URL"} <= defined


def test_the_sandbox_profile_brings_meta_and_ses_with_no_accounts() -> None:
    services = compose()["services"]
    for name in ("sandbox", "ses"):
        assert services[name]["profiles"] == ["sandbox"]
        assert services[name]["build"]["target"] == "sandbox"
    demo = (ROOT / "deploy" / "sandbox.env").read_text()
    assert "MENSAJERO_ENV=sandbox" in demo
    assert "META_GRAPH_URL=http://sandbox:8090" in demo
    assert "SES_ENDPOINT_URL=http://ses:8095" in demo


def test_the_image_runs_as_a_number_with_a_healthcheck_and_no_pip() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text("utf-8")
    assert re.search(r"^USER \d+:\d+$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*shared\.ops", dockerfile, flags=re.MULTILINE)
    assert re.search(
        r"^ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+$", dockerfile, flags=re.MULTILINE
    )
    runtime = dockerfile.split("AS runtime-base", 1)[1]
    assert "pip uninstall" in runtime and "COPY tests" not in dockerfile and "bench" not in runtime
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", "bench", ".venv", ".git"} <= set(ignored)
