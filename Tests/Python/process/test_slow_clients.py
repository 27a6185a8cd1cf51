"""Hostile clients at the socket level: connections that dribble their headers or say nothing."""

import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

from hospital_api import serve
from waiting import wait_until

IDLE_SECONDS = 3


@pytest.fixture(scope="module")
def gateway():
    data = tempfile.mkdtemp(prefix="hospital-slow-")
    process, urls = serve(data, env={"HOSPITAL_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS)})
    yield urllib.parse.urlparse(urls["gateway"])
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


def _latencies(url: str, n: int = 40) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200
            answer.read()
        times.append(time.perf_counter() - start)
    return sorted(times)


def test_200_connections_dribbling_their_headers_do_not_delay_a_normal_request(gateway):
    url = f"http://{gateway.hostname}:{gateway.port}/health/ready"
    before = _latencies(url)
    slow = [socket.create_connection((gateway.hostname, gateway.port)) for _ in range(200)]
    request = b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    stop = threading.Event()
    sent = [0]

    def dribble():
        # One byte a second on every connection: never a whole request head.
        for byte in request:
            for connection in slow:
                try:
                    connection.send(bytes([byte]))
                except OSError:
                    pass
            sent[0] += 1
            if stop.wait(1):
                return

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        wait_until(lambda: sent[0] >= 3, 10, "the dribble under way")
        during = _latencies(url)
    finally:
        stop.set()
        thread.join()
        for connection in slow:
            connection.close()
    print(f"p50 {statistics.median(before) * 1000:.1f} → {statistics.median(during) * 1000:.1f} ms, "
          f"p90 {before[int(len(before) * 0.9)] * 1000:.1f} → {during[int(len(during) * 0.9)] * 1000:.1f} ms")
    assert statistics.median(during) - statistics.median(before) < 0.1
    assert during[int(len(during) * 0.9)] - before[int(len(before) * 0.9)] < 0.1


def test_connections_that_say_nothing_are_closed_by_the_idle_timeout(gateway):
    silent = [socket.create_connection((gateway.hostname, gateway.port)) for _ in range(50)]
    for connection in silent:
        connection.settimeout(IDLE_SECONDS + 10)
    start = time.monotonic()
    try:
        for connection in silent:
            assert connection.recv(1) == b""  # closed by the server, not by the deadline
        waited = time.monotonic() - start
        assert IDLE_SECONDS - 0.5 <= waited <= IDLE_SECONDS + 10
    finally:
        for connection in silent:
            connection.close()
