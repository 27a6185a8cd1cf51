"""The gateway resends a request once when its connection to a service failed before any
answer, only if sending it twice cannot do anything twice (GET/HEAD, or an Idempotency-Key).
A stand-in service drops the first connection of each request without answering."""

import shutil
import socket
import tempfile
import threading
import uuid

import pytest

from hospital_api import Api, add_accounts, serve

PASSWORD = "resend test password"


class DroppingService:
    """Accepts HTTP/1.1 requests; for each (method, path, Idempotency-Key) the first `drops`
    attempts are answered by closing the connection, later ones with 200 {}."""

    def __init__(self, drops: int = 1):
        self.drops = drops
        self.seen: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket):
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                body += connection.recv(65536)
            request = (method, path, headers.get("idempotency-key"))
            with self.lock:
                self.seen.append(request)
                attempt = self.seen.count(request)
            if attempt <= self.drops:
                connection.shutdown(socket.SHUT_RDWR)  # no answer at all
                return
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")

    def attempts(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.seen if (m, p) == (method, path))

    def close(self):
        self.server.close()


@pytest.fixture(scope="module")
def gateway():
    once, never = DroppingService(drops=1), DroppingService(drops=1_000)
    data = tempfile.mkdtemp(prefix="hospital-resend-")
    add_accounts(data, PASSWORD, roles=("desk", "doctor"))
    process, urls = serve(data, "gateway", env={
        "HOSPITAL_RECEPTION_URL": once.url, "HOSPITAL_PATIENT_MANAGEMENT_URL": once.url,
        "HOSPITAL_DIAGNOSIS_URL": never.url, "HOSPITAL_EXAMINATION_URL": never.url})
    api = Api.sign_in(urls["gateway"], PASSWORD, roles=("desk", "doctor"))
    yield api, once, never
    process.terminate()
    process.wait(timeout=30)
    once.close()
    never.close()
    shutil.rmtree(data, ignore_errors=True)


def test_a_read_is_resent_once_after_its_connection_failed(gateway):
    api, once, never = gateway
    path = f"/patientManagements/{uuid.uuid4()}"
    assert api.call("GET", path, "desk")[0] == 200
    assert once.attempts("GET", path) == 2
    # A service that never answers: two attempts, then the gateway says it is unavailable.
    path = f"/diagnoses?receptionId={uuid.uuid4()}"
    status, body = api.call("GET", path, "doctor")
    assert status == 503 and body["type"] == "/problems/service-unavailable", body
    assert never.attempts("GET", path) == 2


def test_a_command_is_resent_only_with_an_idempotency_key(gateway):
    api, once, _ = gateway
    body = {"patientName": "재전송", "department": "내과"}
    # Without a key the gateway cannot know the first did nothing: it says so, and stops there.
    status, answer = api.call("POST", "/receptions", "desk", body)
    assert status == 503 and answer["type"] == "/problems/service-unavailable", answer
    assert once.attempts("POST", "/receptions") == 1
    # With one, the service would answer a repeat with the first answer: resent once.
    key = f"resend-{uuid.uuid4()}"
    status, _ = api.call("POST", "/receptions", "desk", body, headers={"Idempotency-Key": key})
    assert status == 200
    assert [k for m, p, k in once.seen if (m, p) == ("POST", "/receptions")] == [None, key, key]
