"""The Kubernetes manifests: every overlay renders with kustomize and validates strictly against a
pinned Kubernetes version; every YAML file passes yamllint."""

import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p for p in (ROOT / "deploy" / "kubernetes" / "overlays").iterdir() if p.is_dir())
KUBERNETES = "1.31.0"


def render(overlay: pathlib.Path) -> str:
    rendered = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_each_overlay_renders_and_validates_strictly(overlay, tmp_path):
    text = render(overlay)
    documents = [d for d in yaml.safe_load_all(text) if d]
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Job",
            "NetworkPolicy", "PersistentVolumeClaim"} <= kinds
    builtin = [d for d in documents if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].startswith(
        ("apps/", "batch/", "policy/", "autoscaling/", "networking.k8s.io/"))]
    file = tmp_path / "builtin.yaml"
    file.write_text(yaml.safe_dump_all(builtin))
    checked = subprocess.run(["kubernetes-validate", "--strict", "-k", KUBERNETES, str(file)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_deployment_is_restricted_probed_and_drains():
    for document in yaml.safe_load_all(render(OVERLAYS[0])):
        if not document or document["kind"] != "Deployment":
            continue
        spec = document["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        container = spec["containers"][0]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["ports"][0]["containerPort"] == 8080
        assert container["resources"]["requests"]["cpu"] == "200m"
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
        assert "--no-migrate" in container["args"]
        assert spec["terminationGracePeriodSeconds"] > 5  # the shutdown delay, then the drain
        assert spec["topologySpreadConstraints"]


def test_yaml_is_lint_clean():
    linted = subprocess.run(["yamllint", "-c", str(ROOT / ".yamllint.yaml"), str(ROOT / "deploy")],
                            capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr
