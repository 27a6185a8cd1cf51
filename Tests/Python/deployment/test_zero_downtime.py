"""Zero-downtime restarts, for real: two replicas of every service (PostgreSQL + Kafka, one process
each) behind HAProxy, standing in for Kubernetes Services; k6 registers and completes visits
through the gateway while every replica is replaced in turn the way a rolling update does it (the
new process started and taking traffic before the old one gets SIGTERM). Every request must answer
2xx, every visit must complete, and nothing may be lost or doubled.

Needs a `--traits Kafka` build (HOSPITAL_BINARY), HOSPITAL_TEST_POSTGRES_URL, haproxy, k6 and psql."""

import base64
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid

import pytest

from hospital_api import Api, add_accounts, binary, ready
from waiting import wait_until

HERE = pathlib.Path(__file__).resolve().parent

POSTGRES = os.environ.get("HOSPITAL_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs HOSPITAL_TEST_POSTGRES_URL (CI starts PostgreSQL)")

SERVICES = ("reception", "diagnosis", "examination", "patient-management")
PASSWORD = "zero downtime password"
# Quick failure detection on the mock cluster, as the Swift scale-out tests use.
KAFKA_TUNING = ("fetch.wait.max.ms=1,linger.ms=1,session.timeout.ms=6000,heartbeat.interval.ms=500,"
                "reconnect.backoff.ms=10,reconnect.backoff.max.ms=200,topic.metadata.refresh.interval.ms=1000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(database_url: str, sql: str) -> str:
    done = subprocess.run(["psql", database_url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def database_url(name: str) -> str:
    base, _, _ = POSTGRES.rpartition("/")
    return f"{base}/{name}"


class HAProxy:
    """One frontend per service, three server slots per backend (two replicas and the one a
    replacement starts in), health-checked on /health/ready every second like a readiness probe."""

    def __init__(self, directory: pathlib.Path, slots: dict[str, list[int]]):
        self.socket = directory / "haproxy.sock"
        self.frontends = {name: free_port() for name in slots}
        lines = [
            "global",
            f"  stats socket {self.socket} level admin",
            "  maxconn 4000",
            "defaults",
            "  mode http",
            "  log global",
            "  option httplog",
            "  option log-health-checks",
            "  timeout connect 2s",
            "  timeout client 60s",
            "  timeout server 60s",
            "  timeout http-keep-alive 2s",
            # No resending of requests to another replica (a Kubernetes Service does not either):
            # only a connection refused is retried, as HAProxy always does.
            "  option httpchk",
            "  http-check send meth GET uri /health/ready",
            # As the manifests' readiness probe (every 2 s, 2 s timeout, one failure), a little faster.
            "  timeout check 2s",
            "  default-server inter 1s fall 1 rise 1",
        ]
        for name, ports in slots.items():
            lines += [f"frontend {name}", f"  bind 127.0.0.1:{self.frontends[name]}", f"  default_backend {name}",
                      f"backend {name}"]
            lines += [f"  server s{slot} 127.0.0.1:{port} check" for slot, port in enumerate(ports)]
        config = directory / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(directory / "haproxy.log", "w"))

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def up(self, backend: str, slot: int) -> bool:
        """Whether HAProxy sends traffic to the slot (its health check passed)."""
        for line in self.command(f"show servers state {backend}").splitlines()[2:]:
            fields = line.split()
            if len(fields) > 5 and fields[3] == f"s{slot}":
                return fields[5] == "2"  # srv_op_state 2: running
        return False

    def stats(self) -> list[dict]:
        """HAProxy's counters, a row per frontend, server and backend."""
        header, *rows = self.command("show stat").lstrip("# ").splitlines()
        names = header.split(",")
        return [dict(zip(names, row.split(","))) for row in rows if row]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.frontends[name]}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Cluster:
    def __init__(self, directory: pathlib.Path, kafka: str, prefix: str):
        self.directory = directory
        self.kafka = kafka
        self.prefix = prefix
        self.slots = {name: [free_port() for _ in range(3)] for name in ("gateway", *SERVICES)}
        self.running: dict[str, dict[int, subprocess.Popen]] = {name: {} for name in self.slots}
        self.generation = 0
        self.accounts_added = False
        self.haproxy = HAProxy(directory, self.slots)
        self.signing_key = directory / "signing-key.pem"
        self.attachments = directory / "attachments"
        self.pii = {"HOSPITAL_PII_KEY": base64.b64encode(os.urandom(32)).decode(),
                    "HOSPITAL_PII_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
                    # One audit key for every replica of a service (each has its own data directory).
                    "HOSPITAL_AUDIT_KEY": base64.b64encode(os.urandom(32)).decode()}

    def environment(self, name: str) -> dict:
        env = {**os.environ, **self.pii, "HOSPITAL_LOG_LEVEL": "warning", "HOSPITAL_RELAY_POLL_MS": "50",
               "HOSPITAL_SHUTDOWN_DELAY_SECONDS": "3", "HOSPITAL_SIGNING_KEY_FILE": str(self.signing_key),
               "HOSPITAL_GATEWAY_URL": self.haproxy.url("gateway"), "HOSPITAL_ATTACHMENTS_DIR": str(self.attachments)}
        for service in SERVICES:
            env[f"HOSPITAL_{service.upper().replace('-', '_')}_URL"] = self.haproxy.url(service)
        if name == "gateway":
            # The replicas share accounts and sessions in the gateway's own database.
            env["HOSPITAL_GATEWAY_DATABASE_URL"] = database_url(f"{self.prefix}_gateway")
        else:
            env.update({"HOSPITAL_DATABASE_URL": database_url(f"{self.prefix}_{name.replace('-', '_')}"),
                        "HOSPITAL_KAFKA_BROKERS": self.kafka, "HOSPITAL_KAFKA_PROPERTIES": KAFKA_TUNING,
                        "HOSPITAL_KAFKA_DELIVERY_TIMEOUT_MS": "5000",
                        "HOSPITAL_KAFKA_GROUP_PREFIX": f"{self.prefix}.",
                        # A new pod, a new name: as a Deployment's rollout does.
                        "POD_NAME": f"{name}-{self.generation}"})
        return env

    def start(self, name: str, slot: int):
        """Starts a process in `slot` and waits until HAProxy routes to it."""
        self.generation += 1
        data = self.directory / f"{name}-{slot}-{self.generation}"
        data.mkdir()
        if name == "gateway" and not self.accounts_added:
            add_accounts(str(data), PASSWORD, roles=("desk", "doctor", "examiner"),
                         env={"HOSPITAL_GATEWAY_DATABASE_URL": database_url(f"{self.prefix}_gateway")})
            self.accounts_added = True
        port = self.slots[name][slot]
        log = open(self.directory / f"{name}-{slot}-{self.generation}.log", "w")
        process = subprocess.Popen(
            [binary(), "serve", name, "--no-migrate", "--data-dir", str(data), f"--{name}-port", str(port)],
            stdout=subprocess.DEVNULL, stderr=log, env=self.environment(name))
        self.running[name][slot] = process
        wait_until(lambda: process.poll() is None and ready(f"http://127.0.0.1:{port}"), 60, f"{name} in slot {slot} ready")
        wait_until(lambda: self.haproxy.up(name, slot), 10, f"HAProxy routing to {name} slot {slot}")

    def replace(self, name: str, slot: int):
        """A rolling update's step: a new process in the free slot, then SIGTERM to the old one,
        which turns unready, is dropped by the health check, finishes what it has and exits 0."""
        free = next(s for s in range(3) if s not in self.running[name])
        self.start(name, free)
        old = self.running[name].pop(slot)
        old.send_signal(signal.SIGTERM)
        assert old.wait(timeout=30) == 0, f"{name} slot {slot} did not stop cleanly"
        return free

    def stop(self):
        for processes in self.running.values():
            for process in processes.values():
                process.kill()
        self.haproxy.stop()


@pytest.fixture
def kafka():
    process = subprocess.Popen([binary(), "dev", "kafka"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    bootstrap = process.stdout.readline().strip()
    assert bootstrap, "hospital dev kafka printed no bootstrap address (is this a --traits Kafka build?)"
    yield bootstrap
    process.terminate()
    process.wait(timeout=10)


def test_every_replica_restarted_under_load_loses_nothing(kafka):
    directory = pathlib.Path(tempfile.mkdtemp(prefix="hospital-rolling-"))
    prefix = "zd" + uuid.uuid4().hex[:8]
    psql(POSTGRES, f"CREATE DATABASE {prefix}_gateway")
    for service in SERVICES:
        database = f"{prefix}_{service.replace('-', '_')}"
        psql(POSTGRES, f"CREATE DATABASE {database}")
        # The migration Job, before any replica starts (they start with --no-migrate).
        migrated = subprocess.run([binary(), "migrate", service, "--database", database_url(database)],
                                  capture_output=True, text=True)
        assert migrated.returncode == 0, migrated.stderr
    cluster = Cluster(directory, kafka, prefix)
    try:
        for name in (*SERVICES, "gateway"):
            for slot in (0, 1):
                cluster.start(name, slot)
        gateway = cluster.haproxy.url("gateway")
        api = Api.sign_in(gateway, PASSWORD, roles=("desk", "doctor", "examiner"))
        # One whole visit first, through to the desk's board, as a deployment's smoke test would:
        # a new consumer group takes seconds to be handed its partitions (the broker's initial
        # rebalance delay), and until then the board would answer 404 for visits it has not
        # heard of yet; that start-up is not what this test is about.
        api.visit("예열")

        # The services ask the gateway for revoked sessions every 2 s from their start, before any
        # gateway replica ran (HAProxy answered those 503 itself): the count starts from here.
        before = {row["pxname"]: int(row["hrsp_5xx"] or 0)
                  for row in cluster.haproxy.stats() if row["svname"] == "BACKEND"}
        summary = directory / "k6-summary.json"
        load = subprocess.Popen(
            ["k6", "run", "--quiet", "--no-usage-report", "--summary-export", str(summary),
             "-e", f"BASE_URL={gateway}", "-e", f"DESK_TOKEN={api.tokens['desk']}",
             "-e", f"DOCTOR_TOKEN={api.tokens['doctor']}", "-e", f"EXAMINER_TOKEN={api.tokens['examiner']}",
             "-e", "VUS=4", "-e", "DURATION=100s", str(HERE / "visits.js")],
            stdout=open(directory / "k6.log", "w"), stderr=subprocess.STDOUT)

        reception_db = database_url(f"{prefix}_reception")
        wait_until(lambda: int(psql(reception_db, "SELECT COUNT(*) FROM receptions")) >= 8, 60, "load under way")
        # Every replica of every service, one at a time, as `kubectl rollout restart` would.
        restarts = 0
        for name in (*SERVICES, "gateway"):
            for slot in sorted(cluster.running[name]):
                cluster.replace(name, slot)
                restarts += 1
        assert load.poll() is None, "the load ended before every replica was restarted: lengthen DURATION"
        during = int(psql(reception_db, "SELECT COUNT(*) FROM receptions"))

        errors = lambda: "\n".join(line for line in (directory / "k6.log").read_text().splitlines()
                                    if "level=" in line)[-6000:]
        assert load.wait(timeout=240) == 0, errors()
        metrics = json.loads(summary.read_text())["metrics"]
        requests = metrics["http_reqs"]["count"]
        started = metrics["visits_started"]["count"]
        completed = metrics["visits_completed"]["count"]
        print(f"\n{restarts} replicas restarted; {requests} requests, "
              f"{metrics['http_req_failed']['value'] * 100:.2f} % failed; {started} visits, {completed} completed")
        stats = cluster.haproxy.stats()
        backends = [row for row in stats if row["svname"] == "BACKEND"]
        retried = sum(int(row["wretr"] or 0) + int(row["wredis"] or 0) for row in backends)
        print(f"HAProxy: {sum(int(row['hrsp_2xx'] or 0) for row in backends)} responses 2xx across the "
              f"gateway and the services, {retried} connections retried")
        assert restarts == 10
        # No hop answered 5xx: not the gateway to k6 (or to a service), nor a service to the gateway.
        assert all(int(row["hrsp_5xx"] or 0) == before[row["pxname"]] for row in backends), [
            (row["pxname"], row["hrsp_5xx"], before[row["pxname"]]) for row in backends]
        assert metrics["http_req_failed"]["value"] == 0 and metrics["http_req_failed"]["passes"] == 0
        assert started == completed and completed >= during - 1 > 8
        started += 1  # and the first visit, before the load

        # Nothing lost or doubled: one row per visit in every service, every visit on the board
        # as completed.
        def count(service: str, sql: str) -> int:
            return int(psql(database_url(f"{prefix}_{service}"), sql))

        assert count("reception", "SELECT COUNT(*) FROM receptions WHERE status = 'COMPLETED'") == started
        assert count("reception", "SELECT COUNT(*) FROM receptions") == started
        assert count("diagnosis", "SELECT COUNT(*) FROM diagnoses") == started
        assert count("diagnosis", "SELECT COUNT(DISTINCT reception_id) FROM diagnoses") == started
        assert count("examination", "SELECT COUNT(*) FROM examinations") == started
        wait_until(lambda: count("patient_management",
                                 "SELECT COUNT(*) FROM patient_managements WHERE status = 'COMPLETED'") == started,
                   30, "every visit completed on the desk's board")
        assert count("patient_management", "SELECT COUNT(*) FROM patient_managements") == started

        # The audit trail is in each service's database, shared by its replicas: every
        # registration has its entry although every replica that wrote one has since stopped
        # (each flushes its last entries on SIGTERM), and each chain, extended by two replicas at
        # a time with the one audit key, still verifies, up to the checkpoint the last replica
        # to stop published on Kafka.
        assert count("reception", "SELECT COUNT(*) FROM audit_log WHERE action = 'POST /receptions' "
                                  "AND outcome BETWEEN 200 AND 299") == started
        verified = subprocess.run([binary(), "audit", "verify"], capture_output=True, text=True, env={
            **os.environ, **cluster.pii, "HOSPITAL_KAFKA_BROKERS": cluster.kafka,
            **{f"HOSPITAL_{service.upper().replace('-', '_')}_DATABASE_URL":
               database_url(f"{prefix}_{service.replace('-', '_')}") for service in SERVICES}})
        print(verified.stdout.strip())
        assert verified.returncode == 0, verified.stdout + verified.stderr
        chains = dict(line.split(": ", 1) for line in verified.stdout.splitlines())
        assert set(chains) == {"checkpoints", *SERVICES}, chains
        assert all(re.match(r"ok, [1-9]\d* entries; matches its checkpoint", chains[service])
                   for service in SERVICES), chains
    finally:
        cluster.stop()
        if not os.environ.get("HOSPITAL_TEST_KEEP"):
            shutil.rmtree(directory, ignore_errors=True)
