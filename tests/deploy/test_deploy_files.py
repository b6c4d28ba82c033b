"""compose.yaml against the Compose specification's JSON schema (vendored from
github.com/compose-spec/compose-spec, schema/compose-spec.json; `docker compose` is not
installed here), the Kubernetes manifests through `kubectl apply --dry-run=client
--validate=false` (against a discovery-only stand-in API server), and the environment both give
the containers through Wardgate's own production-mode checks."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.fake_kube_api import FakeKubeApi

COMPOSE = ROOT / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
SCHEMA = Path(__file__).with_name("compose-spec.json")
WEB_SERVICES = {"gateway", "portal"}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _manifests() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def _value_for(name: str) -> str:
    if name.endswith("_SIGNING_KEY"):
        return base64.b64encode(os.urandom(32)).decode()
    if name == "WARDGATE_ALLOWED_HOSTS":
        return "wardgate.example.com"
    return secrets.token_urlsafe(48)


def _interpolate(value: str) -> str:
    """Compose's ${NAME:?error} and ${NAME:-default}, with made-up secrets for the required."""
    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        return _value_for(name) if op == ":?" else rest

    return re.sub(r"\$\{([A-Z0-9_]+)(:\?|:-)([^}]*)\}", one, value)


def _production_problems(environment: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WARDGATE_", "DATABASE_URL", "CELERY_", "REDIS_URL", "DJANGO_"))}
    env |= environment | {"DJANGO_SETTINGS_MODULE": "wardgate.settings",
                          "WARDGATE_VAR_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_runs_every_part() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "gateway", "portal", "worker", "beat",
            "nginx"} <= set(services)
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["gateway"]["command"][:3] == ["serve", "--only", "gateway"]
    assert services["portal"]["command"][:3] == ["serve", "--only", "portal"]
    assert services["worker"]["entrypoint"][:4] == ["celery", "-A", "wardgate", "worker"]
    assert services["beat"]["entrypoint"][:4] == ["celery", "-A", "wardgate", "beat"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "location /mcp/" in nginx and "server gateway:8000" in nginx
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    for name in WEB_SERVICES:
        assert services[name]["stop_grace_period"] == "40s"  # longer than --grace-seconds 30


def test_compose_environment_passes_the_production_checks(tmp_path: Path) -> None:
    environment = {k: _interpolate(str(v))
                   for k, v in _compose()["x-wardgate-env"].items()}
    assert environment["WARDGATE_MODE"] == "production"
    done = _production_problems(environment, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # And the same environment without one key is refused: the check above is a real one.
    del environment["WARDGATE_AUDIT_CHAIN_KEY"]
    refused = _production_problems(environment, tmp_path)
    assert refused.returncode != 0 and "WARDGATE_AUDIT_CHAIN_KEY" in refused.stderr


def test_kubernetes_manifests_pass_a_client_dry_run(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it is at /usr/bin/kubectl on the CI machine)")
    api = FakeKubeApi()
    try:
        done = subprocess.run(
            ["kubectl", "apply", "--dry-run=client", "--validate=false", "-f", str(K8S)],
            env={**os.environ, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig")),
                 "HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=120)
    finally:
        api.close()
    assert done.returncode == 0, done.stderr[-3000:]
    created = set(done.stdout.split("\n"))
    for name in ("gateway", "portal", "worker", "beat"):
        assert f"deployment.apps/wardgate-{name} created (dry run)" in created, done.stdout
    assert "service/wardgate-gateway created (dry run)" in created
    assert "configmap/wardgate-config created (dry run)" in created
    assert "secret/wardgate-secrets created (dry run)" in created


def test_kubernetes_deployments_probe_readyz_and_cover_the_production_settings(tmp_path: Path) -> None:
    docs = _manifests()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert deployments["wardgate-gateway"]["spec"]["replicas"] == 2
    assert deployments["wardgate-beat"]["spec"]["replicas"] == 1
    for name in ("wardgate-gateway", "wardgate-portal"):
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["args"][:3] == ["serve", "--only", name.removeprefix("wardgate-")]
        assert pod["terminationGracePeriodSeconds"] > 30
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    secret = next(d for d in docs if d["kind"] == "Secret")["stringData"]
    environment = {**config, **{k: (_value_for(k) if v.startswith("CHANGE-ME") else v)
                                for k, v in secret.items()}}
    environment["WARDGATE_VAR_DIR"] = str(tmp_path)
    done = _production_problems(environment, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_dockerfile_is_multi_stage_non_root_and_checks_readyz() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM .+ AS build$", dockerfile, re.M)
    assert re.search(r"^FROM .+ AS runtime$", dockerfile, re.M)
    assert "pip wheel" in dockerfile and "--no-index --find-links=/wheels wardgate" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert "/readyz" in dockerfile.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["wardgate"]' in dockerfile and 'CMD ["serve"' in dockerfile
