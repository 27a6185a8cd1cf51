#!/usr/bin/env python3
"""Where the Kafka hops' time goes: the system as Kubernetes runs it (a process per service and
the gateway, each service on a SQLite file of its own, events through librdkafka's mock cluster
from `hospital dev kafka`), measured with `hospital bench` at several loads and consumer fetch
waits, and the processes' CPU while the system is idle. Needs a `--traits Kafka` build:

    python3 scripts/bench-kafka.py --binary .build/release/hospital

For each `--fetch-wait` (librdkafka's `fetch.wait.max.ms`; the mock cluster holds every fetch
that finds nothing for that long, where a real broker answers as soon as a message arrives), a
fresh system: its idle CPU over `--idle` seconds (mock brokers and services apart), then whole
visits at each `--concurrency` and each open-loop `--rate`, with the hops' p50 and p99.
"""

import argparse
import base64
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

SERVICES = ("reception", "diagnosis", "examination", "patient-management")
PASSWORD = "bench-kafka-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def wait_until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


class System:
    def __init__(self, binary: str, fetch_wait: int, directory: pathlib.Path):
        self.binary = binary
        self.directory = directory
        self.processes: dict[str, subprocess.Popen] = {}
        self.mock = subprocess.Popen([binary, "dev", "kafka"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.brokers = self.mock.stdout.readline().strip()
        assert self.brokers, "hospital dev kafka printed no bootstrap address (a --traits Kafka build?)"
        ports = {name: free_port() for name in ("gateway", *SERVICES)}
        self.gateway = f"http://127.0.0.1:{ports['gateway']}"
        env = {**os.environ, "HOSPITAL_LOG_LEVEL": "error",
               "HOSPITAL_PII_KEY": base64.b64encode(os.urandom(32)).decode(),
               "HOSPITAL_PII_INDEX_KEY": base64.b64encode(os.urandom(32)).decode(),
               "HOSPITAL_AUDIT_KEY": base64.b64encode(os.urandom(32)).decode(),
               "HOSPITAL_GATEWAY_URL": self.gateway,
               "HOSPITAL_KAFKA_BROKERS": self.brokers,
               "HOSPITAL_KAFKA_PROPERTIES": f"fetch.wait.max.ms={fetch_wait},linger.ms=1,reconnect.backoff.ms=10",
               # One client address sends what a clinic's many would.
               "HOSPITAL_RATE_LIMIT": "1000000"}
        for name in SERVICES:
            env[f"HOSPITAL_{name.upper().replace('-', '_')}_URL"] = f"http://127.0.0.1:{ports[name]}"
        gateway_data = directory / "gateway"
        gateway_data.mkdir()
        for role in ("desk", "doctor", "examiner"):
            subprocess.run([binary, "users", "add", role, "--role", role, "--data-dir", str(gateway_data)],
                           input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True, capture_output=True,
                           env={**env, "HOSPITAL_BCRYPT_COST": "10"})
        for name in ("gateway", *SERVICES):
            data = directory / name
            data.mkdir(exist_ok=True)
            self.processes[name] = subprocess.Popen(
                [binary, "serve", name, "--data-dir", str(data), f"--{name}-port", str(ports[name])],
                stdout=subprocess.DEVNULL, stderr=open(directory / f"{name}.log", "w"), env=env)
        for name in ("gateway", *SERVICES):
            wait_until(lambda: ready(f"http://127.0.0.1:{ports[name]}"), 120, f"{name} ready")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def idle_cpu(self, seconds: float) -> tuple[float, float]:
        """CPU per second of the services (and gateway) and of the mock brokers, idle."""
        before = [cpu_seconds(pid) for pid in self.pids()], cpu_seconds(self.mock.pid)
        time.sleep(seconds)  # a measurement window, not a synchronisation
        after = [cpu_seconds(pid) for pid in self.pids()], cpu_seconds(self.mock.pid)
        return (sum(after[0]) - sum(before[0])) / seconds, (after[1] - before[1]) / seconds

    def bench(self, *args: str) -> str:
        command = [self.binary, "bench", "--url", self.gateway, *args]
        for pid in self.pids():
            command += ["--server-pid", str(pid)]
        return subprocess.run(command, env={**os.environ, "HOSPITAL_BENCH_PASSWORD": PASSWORD},
                              capture_output=True, text=True, check=True).stdout

    def stop(self):
        for process in [*self.processes.values(), self.mock]:
            process.kill()
            process.wait()


def summary(out: str) -> str:
    rate = re.search(r"whole visits (?:at concurrency \d+|offered at [\d.]+/s) in [\d.]+ s: ([\d.]+)", out)
    cpu = re.search(r"([\d.]+) ms per visit", out)
    hops = re.findall(r"hop (.+?)\s+p50 ([\d.]+)\s+p99 ([\d.]+)", out)
    return (f"{float(rate.group(1)):6.1f} visits/s  {float(cpu.group(1)):5.1f} ms CPU/visit  hops p50 "
            + "/".join(f"{float(p50):.0f}" for _, p50, _ in hops) + " ms, p99 "
            + "/".join(f"{float(p99):.0f}" for _, _, p99 in hops) + " ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--fetch-wait", type=int, nargs="+", default=[1, 5, 100])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rate", type=float, nargs="*", default=[10])
    parser.add_argument("--visits", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10)
    args = parser.parse_args()
    for wait in args.fetch_wait:
        directory = pathlib.Path(tempfile.mkdtemp(prefix="bench-kafka-"))
        system = System(args.binary, wait, directory)
        try:
            system.bench("--visits", "20", "--warmup", "0", "--concurrency", "4")  # groups joined, topic warm
            services, brokers = system.idle_cpu(args.idle)
            print(f"fetch.wait.max.ms={wait}: idle CPU {services * 100:.1f} % of a core in the five processes, "
                  f"{brokers * 100:.1f} % in the mock brokers")
            for concurrency in args.concurrency:
                out = system.bench("--visits", str(args.visits), "--concurrency", str(concurrency))
                print(f"  concurrency {concurrency:3d}: {summary(out)}")
            for rate in args.rate:
                out = system.bench("--visits", str(args.visits), "--rate", str(rate))
                print(f"  offered {rate:5.1f}/s:   {summary(out)}")
        finally:
            system.stop()
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
