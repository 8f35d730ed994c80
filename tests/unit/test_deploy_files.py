"""The deployment files hold together: what can be checked here without Docker or a cluster.

No Docker engine and no Kubernetes cluster run on these machines, so the image is never
built and the manifests never applied here (docs/deploy.md says what was exercised). What is
checked: every Kubernetes manifest against the API's schemas (kubernetes-validate, strict),
every file a kustomization names exists, every ``CONSENTGATE_*`` variable the compose file,
the manifests and the image set is one the product reads, every metric the alert rules and
the dashboard use is one the services export, and the image's and compose file's shape
(non-root, health check, no development code, a scalable router).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from consentgate.ops.topics_spec import load_spec
from consentgate.router.config import RouterConfig
from consentgate.settings import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.37.0"
PRODUCT = REPO / "services" / "consentgate"


def _kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def _manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every resource file a kustomization lists (patches are partial, checked apart)."""
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        for name in spec.get("resources", []):
            path = (kustomization.parent / name).resolve()
            if path.is_file():
                for doc in yaml.safe_load_all(path.read_text()):
                    if doc:
                        yield path, doc


def _product_source() -> str:
    return "\n".join(p.read_text() for p in PRODUCT.rglob("*.py"))


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    checked = 0
    for path, doc in _manifests():
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(REPO)}: {doc.get('kind')}: {exc.message}")
        checked += 1
    assert checked >= 7


def test_every_file_a_kustomization_names_exists() -> None:
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        names = list(spec.get("resources", []))
        names += [p["path"] for p in spec.get("patches", [])]
        for generator in (*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])):
            names += [f.split("=", 1)[-1] for f in generator.get("files", [])]
            # secrets/*.env are the operator's, kept out of git: their examples must exist
            names += [f"{e}.example" for e in generator.get("envs", [])]
        for name in names:
            assert (kustomization.parent / name).exists(), f"{kustomization}: {name}"


def test_the_router_is_a_statefulset_named_by_its_pods_within_the_partitions() -> None:
    (router,) = [d for _, d in _manifests() if d["kind"] == "StatefulSet"]
    container = router["spec"]["template"]["spec"]["containers"][0]
    ids = [e for e in container["env"] if e["name"] == "CONSENTGATE_ROUTER_INSTANCE_ID"]
    assert ids == [
        {
            "name": "CONSENTGATE_ROUTER_INSTANCE_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        }
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert router["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30
    partitions = load_spec(DEPLOY / "topics.yaml").topics["events.browsing.raw.v1"].partitions
    overlay = yaml.safe_load((K8S / "overlays" / "production" / "kustomization.yaml").read_text())
    counts = [r["count"] for r in overlay.get("replicas", []) if r["name"] == "router"]
    assert counts and all(c <= partitions for c in [router["spec"]["replicas"], *counts])


def _known_variables() -> set[str]:
    known = {f"CONSENTGATE_{name.upper()}" for name in Settings.model_fields}
    known |= {f"CONSENTGATE_ROUTER_{name.upper()}" for name in RouterConfig.model_fields}
    known |= set(re.findall(r"CONSENTGATE_[A-Z_]+", _product_source()))
    return known


def _set_variables() -> Iterator[tuple[str, str]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        for var in env if isinstance(env, dict) else [e.split("=")[0] for e in env]:
            yield f"compose {name}", var
    for path, doc in _manifests():
        for pod in _pod_specs(doc):
            for container in pod["containers"]:
                for env in container.get("env", []):
                    yield str(path.relative_to(REPO)), env["name"]
    overlay = (K8S / "overlays" / "production").glob("**/*")
    for path in overlay:
        if path.is_file():
            for var in re.findall(r"^\s*-?\s*(CONSENTGATE_[A-Z_]+)=", path.read_text(), re.M):
                yield str(path.relative_to(REPO)), var
    for var in re.findall(r"(CONSENTGATE_[A-Z_]+)=", (REPO / "Dockerfile").read_text()):
        yield "Dockerfile", var


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template")
    return [template["spec"]] if template else []


def test_every_consentgate_variable_set_is_one_the_product_reads() -> None:
    known = _known_variables() | {"CONSENTGATE_HEALTH_URL"}  # the image's HEALTHCHECK
    unknown = [(where, v) for where, v in _set_variables() if v.startswith("CONSENTGATE_")]
    unknown = [(where, v) for where, v in unknown if v not in known]
    assert unknown == []


def _metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\bconsentgate_[a-z_]+", text))
    return {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in names}


def test_alerts_and_dashboard_use_only_metrics_the_services_export() -> None:
    exported = set(re.findall(r"\"(consentgate_[a-z_]+)\"", _product_source()))
    rules = yaml.safe_load((DEPLOY / "observability" / "prometheus-rules.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert any("shadow_mismatches" in e for e in exprs)
    assert any("transactions_aborted" in e for e in exprs)
    assert any("consent_state_stale" in e for e in exprs)
    assert any("dead_letters" in e for e in exprs)
    assert any("input_lag" in e for e in exprs)
    dashboard = json.loads((DEPLOY / "observability" / "grafana-dashboard.json").read_text())
    targets = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in [*exprs, *targets]:
        assert _metric_names(expr) <= exported, expr


def test_the_image_runs_the_product_alone_as_a_non_root_user_with_a_health_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER \$\{UID\}", final, re.M)
    assert "HEALTHCHECK" in final
    assert "build-essential" not in final and "apt-get install" not in final
    assert "--no-index" in final  # only the wheels built in the first stage
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything out, then only what the build copies back in
    assert "!services/consentgate/" in ignore
    assert not [line for line in ignore if "devstack" in line and line.startswith("!")]


def test_compose_wires_everything_through_the_environment_and_scales_the_router() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "registry", "users", "provision", "consent", "router"} <= set(services)
    router = services["router"]
    assert "container_name" not in router and "ports" not in router  # --scale router=N
    assert "--instance-id" in " ".join(router["entrypoint"])
    assert services["provision"]["depends_on"]["users"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("provision", "consent", "router"):
        env = services[name]["environment"]
        assert env["CONSENTGATE_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert str(env["CONSENTGATE_SASL_PASSWORD"]).startswith("${"), name  # never inline
    properties = (DEPLOY / "compose" / "kafka.properties").read_text()
    assert "StandardAuthorizer" in properties
    assert "allow.everyone.if.no.acl.found=false" in properties
