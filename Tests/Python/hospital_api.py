"""A client of the gateway's API for tests that drive whole visits without a browser, and the
hospital binary's commands they need: `serve` and the operator's."""

import http.client
import json
import os
import pathlib
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from waiting import wait_until


ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary() -> str:
    explicit = os.environ.get("HOSPITAL_BINARY")
    if explicit:
        return explicit
    for candidate in (ROOT / ".build" / "debug" / "hospital", ROOT / ".build" / "release" / "hospital"):
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("build the hospital binary first (swift build)")


def add_accounts(data: str, password: str, roles=("desk", "doctor", "examiner", "admin", "display"), env=None):
    """One account per role, made as an operator would (`hospital users add`, password on stdin)."""
    for role in roles:
        subprocess.run(
            [binary(), "users", "add", role, "--role", role, "--data-dir", data],
            input=f"{password}\n{password}\n",
            text=True,
            check=True,
            capture_output=True,
            env={**os.environ, "HOSPITAL_BCRYPT_COST": "10", **(env or {})},
        )


def serve(data: str, *args: str, env: dict | None = None, stderr=None):
    """Starts `hospital serve` on `data`, every port chosen by the OS; returns the process and
    the URL of each service by name once it is listening."""
    ports = []
    for service in ("gateway", "reception", "diagnosis", "examination", "patient-management"):
        ports += [f"--{service}-port", "0"]
    process = subprocess.Popen(
        [binary(), "serve", "--data-dir", data, "--log-level", os.environ.get("HOSPITAL_TEST_LOG_LEVEL", "warning"), *ports, *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "HOSPITAL_RELAY_POLL_MS": "50", "HOSPITAL_LOG_POLL_MS": "50", **(env or {})},
    )
    urls = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.match(r"(\S+) listening on (\S+)", line)
        if match:
            urls[match.group(1)] = match.group(2)
        if line.startswith("data directory:"):
            break
    if "gateway" not in urls:
        process.kill()
        raise RuntimeError("hospital serve did not start")
    return process, urls


def ready(base: str) -> bool:
    """Whether the process at `base` answers /health/ready with 200 (False while it cannot)."""
    try:
        with urllib.request.urlopen(base + "/health/ready", timeout=1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Api:
    def __init__(self, base: str, tokens: dict[str, str]):
        self.base = base
        self.tokens = tokens

    @classmethod
    def sign_in(cls, base: str, password: str, roles=("desk", "doctor", "examiner", "admin")) -> "Api":
        tokens = {}
        for role in roles:
            status, body = cls(base, {}).call("POST", "/auth/token", None, {"username": role, "password": password})
            assert status == 200, f"sign-in of {role}: {status} {body}"
            tokens[role] = body["accessToken"]
        return cls(base, tokens)

    def call(self, method: str, path: str, role: str | None, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if role:
            request.add_header("Authorization", f"Bearer {self.tokens[role]}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, raw

    def until(self, path: str, role: str, condition, seconds: float = 30):
        """Polls `path` until `condition(body)` holds; fails after `seconds`."""
        last = None

        def met():
            nonlocal last
            last = self.call("GET", path, role)
            status, body = last
            return last if status == 200 and condition(body) else None

        _, body = wait_until(met, seconds, lambda: f"{path}: condition not met (last: {last[0]} {last[1]})")
        return body

    def register(self, name: str, headers=None) -> str:
        status, body = self.call("POST", "/receptions", "desk", {"patientName": name, "department": "내과"}, headers)
        assert status == 201, (status, body)
        return body["id"]

    def diagnosis_of(self, reception: str) -> str:
        worklist = self.until(f"/diagnoses?receptionId={reception}", "doctor", lambda b: b["items"])
        return worklist["items"][0]["id"]

    def visit(self, name: str, outcome: str = "complete") -> str:
        """A whole visit: registered, one exam prescribed and performed, then completed (or rejected)."""
        reception = self.register(name)
        diagnosis = self.diagnosis_of(reception)
        status, _ = self.call(
            "POST", f"/diagnoses/{diagnosis}/prescriptions", "doctor",
            {"examinations": [{"code": "CBC", "name": "혈액검사"}]})
        assert status == 200
        exams = self.until(f"/examinations?diagnosisId={diagnosis}", "examiner", lambda b: b["items"])
        status, _ = self.call("POST", f"/examinations/{exams['items'][0]['id']}/perform", "examiner", {"result": "정상"})
        assert status == 200
        self.until(f"/diagnoses/{diagnosis}", "doctor", lambda b: b["status"] == "EXAM_DONE")
        if outcome == "complete":
            status, _ = self.call("POST", f"/diagnoses/{diagnosis}/complete", "doctor", {"note": "이상 없음"})
            final = "COMPLETED"
        else:
            status, _ = self.call("POST", f"/diagnoses/{diagnosis}/reject", "doctor", {"reason": "재검 필요"})
            final = "REJECTED"
        assert status == 200
        self.until(f"/patientManagements/{reception}", "desk", lambda b: b["status"] == final)
        return reception

    def cancel(self, name: str) -> str:
        reception = self.register(name)
        status, _ = self.call("POST", f"/receptions/{reception}/cancel", "desk", {"reason": "환자 요청"})
        assert status == 200
        self.until(f"/patientManagements/{reception}", "desk", lambda b: b["status"] == "CANCELED")
        return reception


def upload(api: Api, exam: str, body, content_type: str | None, name: str | None = "file.png", role="examiner",
           length: int | None = None):
    """A raw upload through the gateway; `body` bytes or an iterable of chunks."""
    url = urllib.parse.urlparse(api.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    if content_type:
        headers["Content-Type"] = content_type
    if name is not None:
        headers["Content-Disposition"] = "attachment; filename*=UTF-8''" + urllib.parse.quote(name)
    if isinstance(body, (bytes, bytearray)):
        headers["Content-Length"] = str(len(body))
    elif length is not None:
        headers["Content-Length"] = str(length)
    connection.request("POST", f"/examinations/{exam}/attachments", body=body, headers=headers,
                       encode_chunked=not isinstance(body, (bytes, bytearray)) and length is None)
    answer = connection.getresponse()
    raw = answer.read()
    connection.close()
    return answer.status, (json.loads(raw) if raw and raw[:1] in b"{[" else raw)


def download(api: Api, exam: str, attachment: str, role="doctor", headers=None):
    request = urllib.request.Request(
        f"{api.base}/examinations/{exam}/attachments/{attachment}",
        headers={"Authorization": f"Bearer {api.tokens[role]}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
