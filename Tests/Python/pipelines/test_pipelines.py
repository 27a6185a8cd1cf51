"""The CI/CD pipelines (azure-pipelines.yml and .github/workflows/): valid against the schemas their
vendors publish (check-jsonschema's vendored copies, offline), lint-clean (yamllint, shellcheck,
zizmor), and doing what issue 11 asks: test on every change; on a push to main build the image from
./Containerfile, push it to the registry and deploy the production overlay with the new tag, the
migration Job before the rollout. The pipelines cannot run here (no registry, no cluster); their
deploy script runs against a kubectl that records what it is asked, with kubectl's own kustomize."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
AZURE = ROOT / "azure-pipelines.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
CI_CD = ROOT / ".github" / "workflows" / "ci-cd.yml"
PRODUCTION = "deploy/kubernetes/overlays/production"
SERVICES = {"gateway", "reception", "diagnosis", "examination", "patient-management"}

GITHUB_SCHEMA = ["--builtin-schema", "vendor.github-workflows"]
# The vendored Azure schema has patterns that ECMAScript's unicode mode refuses, hence nonunicode;
# the transform reads `${{ }}` template expressions the way Azure does.
AZURE_SCHEMA = ["--builtin-schema", "vendor.azure-pipelines", "--data-transform", "azure-pipelines",
                "--regex-variant", "nonunicode"]

# zizmor's audits, all of them, except the two that need a look-up on GitHub and Docker Hub
# (commit SHAs for the actions, a digest for the job's container image): the workflow pins majors.
ZIZMOR_CONFIG = """\
rules:
  unpinned-uses:
    config:
      policies:
        "*": ref-pin
  unpinned-images:
    disable: true
"""


def load(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, **kwargs)


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def azure_stages() -> dict:
    return {stage["stage"]: stage for stage in load(AZURE)["stages"]}


def azure_steps(stage: dict) -> list[dict]:
    steps = []
    for job in stage["jobs"]:
        if "deployment" in job:
            steps += job["strategy"]["runOnce"]["deploy"]["steps"]
        else:
            steps += job["steps"]
    return steps


def github_deploy_step() -> dict:
    return next(s for s in load(CI_CD)["jobs"]["deploy"]["steps"] if "OVERLAY_DIR" in s.get("env", {}))


def azure_deploy_step() -> dict:
    return next(s for s in azure_steps(azure_stages()["Deploy"]) if "OVERLAY_DIR" in s.get("env", {}))


# -- the vendors' schemas ---------------------------------------------------------------------------

@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_each_workflow_matches_the_github_schema(workflow):
    checked = run("check-jsonschema", *GITHUB_SCHEMA, str(workflow))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_azure_pipeline_matches_its_schema():
    checked = run("check-jsonschema", *AZURE_SCHEMA, str(AZURE))
    assert checked.returncode == 0, checked.stdout + checked.stderr


BROKEN = [
    # (file, text, replaced by): one misspelling each, as a hurried edit would make it
    (CI_CD, "    runs-on: ubuntu-latest\n", "    runs_on: ubuntu-latest\n"),
    (CI_CD, "    needs: build\n", "    need: build\n"),
    (CI_CD, "      cancel-in-progress: false\n", "      cancel-in-progress: never\n"),
    (CI_CD, "      id-token: write", "      id-token: writ"),
    (AZURE, "              Dockerfile: Containerfile\n", "              Dockerfil: Containerfile\n"),
    (AZURE, "              command: buildAndPush\n", "              command: buildPush\n"),
    (AZURE, "          - task: Docker@2\n", "          - task: Docker@9\n"),
    (AZURE, "        environment: production\n", "        enviroment: production\n"),
]


@pytest.mark.parametrize("path,text,broken", BROKEN, ids=[f"{p.name}:{b.strip()}" for p, _, b in BROKEN])
def test_the_schema_check_catches_a_broken_pipeline(path, text, broken, tmp_path):
    source = path.read_text()
    assert text in source, f"{path.name} no longer has {text!r}: update this test"
    copy = tmp_path / path.name
    copy.write_text(source.replace(text, broken, 1))
    checked = run("check-jsonschema", *(AZURE_SCHEMA if path == AZURE else GITHUB_SCHEMA), str(copy))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Schema validation errors were encountered" in checked.stdout, checked.stdout + checked.stderr


# -- linters --------------------------------------------------------------------------------------

def test_the_pipelines_are_yaml_lint_clean():
    linted = run("yamllint", "-c", str(ROOT / ".yamllint.yaml"), str(AZURE), str(ROOT / ".github"))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def scripts() -> list[tuple[str, str]]:
    """Every shell script in both pipelines, Azure's $(macros) made plain words for shellcheck."""
    found = []
    for workflow in WORKFLOWS:
        for name, job in load(workflow)["jobs"].items():
            found += [(f"{workflow.name}:{name}:{i}", s["run"]) for i, s in enumerate(job["steps"]) if "run" in s]
    for name, stage in azure_stages().items():
        for i, step in enumerate(azure_steps(stage)):
            script = step.get("script") or step.get("bash") or (step.get("inputs") or {}).get("script")
            if script:
                found.append((f"azure-pipelines.yml:{name}:{i}", re.sub(r"\$\(([\w.]+)\)", r"azure-\1", script)))
    return found


@pytest.mark.parametrize("name,script", scripts(), ids=[n for n, _ in scripts()])
def test_every_script_is_shellcheck_clean(name, script, tmp_path):
    file = tmp_path / "script.sh"
    file.write_text("#!/usr/bin/env bash\n" + script)
    checked = run("shellcheck", "--severity=style", str(file))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def zizmor(*paths: pathlib.Path, config: pathlib.Path) -> subprocess.CompletedProcess:
    return run("zizmor", "--offline", "--no-progress", "--config", str(config), *map(str, paths))


def test_zizmor_finds_nothing_in_the_workflows(tmp_path):
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_CONFIG)
    audited = zizmor(*WORKFLOWS, config=config)
    assert audited.returncode == 0, audited.stdout + audited.stderr


def test_zizmor_catches_a_script_injection(tmp_path):
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_CONFIG)
    broken = tmp_path / "ci-cd.yml"
    source = CI_CD.read_text()
    assert "        run: bash .ci/run\n" in source
    broken.write_text(source.replace("        run: bash .ci/run\n",
                                     "        run: echo \"${{ github.event.pull_request.title }}\" && bash .ci/run\n"))
    audited = zizmor(broken, config=config)
    assert audited.returncode != 0 and "template-injection" in audited.stdout, audited.stdout + audited.stderr


# -- what the issue asks of them ------------------------------------------------------------------

def test_the_github_workflow_tests_builds_pushes_and_deploys_on_main():
    workflow = load(CI_CD)
    on = triggers(workflow)
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "build", "deploy"}

    test = jobs["test"]
    assert re.fullmatch(r"(docker\.io/library/)?swift:6\.\d+(\.\d+)?-bookworm", test["container"]["image"])
    assert [s["run"] for s in test["steps"] if "run" in s][-1] == "bash .ci/run"
    assert steps_using(test, "azure/setup-kubectl")  # Debian's kubectl is too old for the overlays
    assert "if" not in test  # pull requests and pushes alike

    main_only = "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
    build = jobs["build"]
    assert build["needs"] == "test" and build["if"] == main_only
    assert build["permissions"] == {"contents": "read", "id-token": "write"}
    assert steps_using(build, "azure/login")
    assert any("az acr login" in s.get("run", "") for s in build["steps"]) or steps_using(build, "docker/login-action")
    [push] = steps_using(build, "docker/build-push-action")
    assert push["with"]["file"] == "Containerfile" and push["with"]["push"] is True
    assert push["with"]["tags"] == "${{ env.IMAGE_REPOSITORY }}:${{ github.sha }}" and push["with"]["context"] == "."
    assert workflow["env"]["IMAGE_REPOSITORY"].endswith(".azurecr.io/hospital")

    deploy = jobs["deploy"]
    assert deploy["needs"] == "build" and deploy["if"] == main_only
    assert deploy["environment"] == "production"
    assert deploy["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    assert deploy["permissions"] == {"contents": "read", "id-token": "write"}
    for action in ("azure/login", "azure/setup-kubectl", "azure/aks-set-context"):
        assert steps_using(deploy, action), action
    step = github_deploy_step()
    assert step["env"] == {"OVERLAY_DIR": PRODUCTION, "IMAGE_TAG": "${{ github.sha }}"}


def test_every_action_is_pinned_and_no_secret_is_used():
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        for job in load(workflow)["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    # a major version at least; a full commit SHA is better
                    assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", step["uses"]), step["uses"]
        # Azure is reached through OpenID Connect: no stored credential at all.
        assert "secrets." not in text and "client-secret" not in text, workflow.name


def test_the_azure_pipeline_tests_builds_pushes_and_deploys_on_main():
    pipeline = load(AZURE)
    assert pipeline["trigger"]["branches"]["include"] == ["main"]
    assert pipeline["pr"]["branches"]["include"] == ["main"]
    stages = azure_stages()
    assert list(stages) == ["Test", "Build", "Deploy"]
    assert "condition" not in stages["Test"]  # pull requests run the tests only
    assert stages["Build"]["dependsOn"] == "Test" and stages["Deploy"]["dependsOn"] == "Build"
    main_only = "and(succeeded(), eq(variables.isMain, 'true'))"
    assert stages["Build"]["condition"] == main_only and stages["Deploy"]["condition"] == main_only
    variables = {v["name"]: v["value"] for v in pipeline["variables"]}
    assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in variables["isMain"]
    assert "ne(variables['Build.Reason'], 'PullRequest')" in variables["isMain"]

    [test] = [s for s in azure_steps(stages["Test"]) if "script" in s]
    assert "swift:6.3-bookworm" in test["script"] and "bash .ci/run" in test["script"]
    assert "KubectlInstaller@0" in [s.get("task") for s in azure_steps(stages["Test"])]

    [docker] = [s for s in azure_steps(stages["Build"]) if s.get("task") == "Docker@2"]
    assert docker["inputs"]["command"] == "buildAndPush"
    assert docker["inputs"]["Dockerfile"] == "Containerfile"
    assert docker["inputs"]["containerRegistry"] == "${{ variables.acrServiceConnection }}"
    assert docker["inputs"]["repository"] == "$(imageRepository)" and variables["imageRepository"] == "hospital"
    assert docker["inputs"]["tags"] == "$(imageTag)" and variables["imageTag"] == "$(Build.SourceVersion)"

    [job] = stages["Deploy"]["jobs"]
    assert job["deployment"] and job["environment"] == "production"  # approvals live on the environment
    tasks = [s.get("task") for s in azure_steps(stages["Deploy"])]
    assert tasks.index("Kubernetes@1") < tasks.index("Bash@3")
    step = azure_deploy_step()
    assert step["env"] == {"OVERLAY_DIR": PRODUCTION, "IMAGE_REPOSITORY": "$(acrLoginServer)/$(imageRepository)",
                           "IMAGE_TAG": "$(imageTag)"}


def test_both_pipelines_deploy_with_the_same_script():
    assert github_deploy_step()["run"] == azure_deploy_step()["inputs"]["script"]


# -- the deploy script, run against a recording kubectl ---------------------------------------------

RECORDING_KUBECTL = """\
import json, os, sys
args = sys.argv[1:]
if args[:1] == ["kustomize"]:
    os.execv(os.environ["REAL_KUBECTL"], ["kubectl", *args])
files = [open(args[i + 1]).read() for i, a in enumerate(args) if a == "-f"]
with open(os.environ["KUBECTL_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "files": files}) + "\\n")
fails = os.environ.get("KUBECTL_FAILS")
sys.exit(1 if fails and fails in " ".join(args) else 0)
"""

REPOSITORY = "hospital.azurecr.io/hospital"
TAG = "0123456789abcdef0123456789abcdef01234567"


def deploy(overlay: str, tmp_path: pathlib.Path, fails: str = "") -> tuple[subprocess.CompletedProcess, list]:
    real = shutil.which("kubectl")
    assert real, "kubectl (with kustomize) is needed"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "kubectl"
    stub.write_text(f"#!{sys.executable}\n" + RECORDING_KUBECTL)
    stub.chmod(0o755)
    log = tmp_path / "kubectl.log"
    log.touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "REAL_KUBECTL": real, "KUBECTL_LOG": str(log),
           "KUBECTL_FAILS": fails, "OVERLAY_DIR": overlay, "IMAGE_REPOSITORY": REPOSITORY, "IMAGE_TAG": TAG,
           "TMPDIR": str(tmp_path)}
    # GitHub runs it with `bash --noprofile --norc -eo pipefail`, Azure's Bash@3 with bash.
    ran = run("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", github_deploy_step()["run"], cwd=ROOT, env=env)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    for call in calls:
        call["documents"] = [d for f in call["files"] for d in yaml.safe_load_all(f) if d]
    return ran, calls


def kinds(call: dict) -> set[str]:
    return {d["kind"] for d in call["documents"]}


def images(document: dict) -> list[str]:
    spec = document["spec"]["template"]["spec"]
    return [c["image"] for c in spec.get("initContainers", []) + spec["containers"]]


OVERLAY_DIRS = sorted({str(p.relative_to(ROOT)) for p in (ROOT / "deploy" / "kubernetes" / "overlays").iterdir()
                       if p.is_dir()})


def test_the_pipelines_deploy_an_overlay_that_exists():
    assert (ROOT / PRODUCTION / "kustomization.yaml").is_file(), f"the pipelines deploy {PRODUCTION}, which is missing"


@pytest.mark.parametrize("overlay", OVERLAY_DIRS, ids=[pathlib.Path(o).name for o in OVERLAY_DIRS])
def test_the_deploy_script_migrates_with_the_new_image_then_rolls_out(overlay, tmp_path):
    ran, calls = deploy(overlay, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rendered = [d for d in yaml.safe_load_all(run("kubectl", "kustomize", overlay, cwd=ROOT).stdout) if d]
    deployments = {d["metadata"]["name"] for d in rendered if d["kind"] == "Deployment"}
    assert SERVICES <= deployments
    verbs = [c["args"][0] for c in calls]
    # what the operators make (CloudNativePG's databases, Strimzi's Kafka and topics) is waited for
    operators = {(d["kind"], d["metadata"]["name"]) for d in rendered
                 if (d["kind"] == "Cluster" and d["apiVersion"].startswith("postgresql.cnpg.io/"))
                 or (d["kind"] in ("Kafka", "KafkaTopic") and d["apiVersion"].startswith("kafka.strimzi.io/"))}
    waits_for_operators = bool(operators)
    assert verbs == (["delete", "apply"] + ["wait"] * (1 + waits_for_operators) + ["apply"]
                     + ["rollout"] * len(deployments)), verbs

    delete, first, *rest = calls
    migrate_wait = rest[waits_for_operators]
    second = rest[waits_for_operators + 1]
    rollouts = rest[waits_for_operators + 2:]
    # 1. the previous migration Job goes, then everything but the Deployments, the Job among them
    assert "--ignore-not-found" in delete["args"] and kinds(delete) == {"Job"}
    assert "Job" in kinds(first) and "Deployment" not in kinds(first)
    assert {(d["kind"], d["metadata"]["name"]) for d in first["documents"]} == \
        {(d["kind"], d["metadata"]["name"]) for d in rendered if d["kind"] != "Deployment"}
    if operators:
        assert "--for=condition=Ready" in rest[0]["args"]
        assert {(d["kind"], d["metadata"]["name"]) for d in rest[0]["documents"]} == operators
    # 2. the Job completes before a single Deployment is applied
    assert "--for=condition=complete" in migrate_wait["args"] and kinds(migrate_wait) == {"Job"}
    [job] = migrate_wait["documents"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    # 3. the Deployments, then each one's rollout
    assert kinds(second) == {"Deployment"} and {d["metadata"]["name"] for d in second["documents"]} == deployments
    assert all(c["args"][:2] == ["rollout", "status"] and "--timeout=10m" in c["args"] for c in rollouts)
    assert {c["documents"][0]["metadata"]["name"] for c in rollouts} == deployments
    # the one image, with the new tag, everywhere
    for document in [job] + second["documents"]:
        assert set(images(document)) == {f"{REPOSITORY}:{TAG}"}, document["metadata"]["name"]
    for document in second["documents"]:
        assert "--no-migrate" in document["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_failed_migration_rolls_nothing_out(tmp_path):
    ran, calls = deploy(OVERLAY_DIRS[0], tmp_path, fails="--for=condition=complete")
    assert ran.returncode != 0
    assert "the migration Job did not complete" in ran.stderr
    assert not any("Deployment" in kinds(c) for c in calls if c["args"][0] == "apply")
    assert not any(c["args"][0] == "rollout" for c in calls)
