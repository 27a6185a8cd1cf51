"""Health that tells the truth: readiness follows the database file, the upstreams and SIGTERM."""

import pathlib
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request

from hospital_api import serve
from waiting import wait_until


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def within(seconds: float, condition, what: str) -> float:
    """How long `condition` took to hold; fails past `seconds`."""
    start = time.monotonic()
    wait_until(condition, seconds, what)
    return time.monotonic() - start


def test_readiness_follows_the_database_file():
    data = tempfile.mkdtemp(prefix="hospital-health-")
    try:
        process, urls = serve(data)
        try:
            reception, diagnosis = urls["reception"], urls["diagnosis"]
            assert status(reception) == 200 and status(diagnosis) == 200
            # Made read-only: the service is no longer ready, within 2 s; and again once writable.
            file = pathlib.Path(data) / "diagnosis.sqlite"
            file.chmod(0o400)
            print(f"read-only → 503 in {within(2, lambda: status(diagnosis) == 503, 'diagnosis unready'):.2f} s")
            file.chmod(0o600)
            within(2, lambda: status(diagnosis) == 200, "diagnosis ready again")
            # Deleted under the running service: not ready, for good; the others are unaffected.
            (pathlib.Path(data) / "reception.sqlite").unlink()
            print(f"deleted → 503 in {within(2, lambda: status(reception) == 503, 'reception unready'):.2f} s")
            assert status(diagnosis) == 200
            assert status(urls["gateway"]) == 200  # other services still answer behind it
            with urllib.request.urlopen(reception + "/health/live", timeout=5) as answer:
                assert answer.status == 200  # alive: restarting it is the orchestrator's call
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_sigterm_turns_readiness_off_first_while_requests_are_still_served():
    data = tempfile.mkdtemp(prefix="hospital-health-")
    try:
        process, urls = serve(data, env={"HOSPITAL_SHUTDOWN_DELAY_SECONDS": "4"})
        gateway = urls["gateway"]
        assert status(gateway) == 200
        process.send_signal(signal.SIGTERM)
        took = within(2, lambda: status(gateway) == 503, "the gateway unready after SIGTERM")
        print(f"SIGTERM → 503 in {took:.2f} s")
        # Still serving while unready: a request that arrives now is answered.
        with urllib.request.urlopen(gateway + "/health/live", timeout=5) as answer:
            assert answer.status == 200
        assert process.wait(timeout=30) == 0
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_a_gateway_with_no_service_answering_is_not_ready():
    data = tempfile.mkdtemp(prefix="hospital-health-")
    try:
        closed = {f"HOSPITAL_{name}_URL": "http://127.0.0.1:9" for name in
                  ("RECEPTION", "DIAGNOSIS", "EXAMINATION", "PATIENT_MANAGEMENT")}
        process, urls = serve(data, "gateway", env=closed)
        try:
            assert status(urls["gateway"]) == 503
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)
