"""Exam result files: uploads and downloads through the gateway of a real `hospital serve`,
streamed; type by the file's own bytes; limits; a process killed mid-upload."""

import hashlib
import http.client
import json
import os
import pathlib
import shutil
import signal
import sqlite3
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from hospital_api import Api, add_accounts, download, serve, upload
from waiting import wait_until

PASSWORD = "attachment test password"
PNG = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF-1.7\n"
ELF = b"\x7fELF\x02\x01\x01\x00"


def accounts(data: str):
    add_accounts(data, PASSWORD)


def start_upload(api: Api, exam: str, declared: int) -> http.client.HTTPConnection:
    """An upload whose headers declare `declared` bytes, the body not sent yet."""
    url = urllib.parse.urlparse(api.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    connection.putrequest("POST", f"/examinations/{exam}/attachments")
    for name, value in (("Authorization", f"Bearer {api.tokens['examiner']}"), ("Content-Type", "image/png"),
                        ("Content-Length", str(declared))):
        connection.putheader(name, value)
    connection.endheaders()
    return connection


@pytest.fixture(scope="module")
def system():
    data = tempfile.mkdtemp(prefix="hospital-attachments-")
    accounts(data)
    process, urls = serve(data, env={"HOSPITAL_ATTACHMENT_MAX_MB": "60"})
    api = Api.sign_in(urls["gateway"], PASSWORD)
    yield data, process, urls, api
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


def new_exam(api: Api, name: str = "첨부환자") -> tuple[str, str]:
    reception = api.register(name)
    diagnosis = api.diagnosis_of(reception)
    status, _ = api.call(
        "POST", f"/diagnoses/{diagnosis}/prescriptions", "doctor", {"examinations": [{"code": "XR", "name": "흉부 X선"}]})
    assert status == 200
    exams = api.until(f"/examinations?diagnosisId={diagnosis}", "examiner", lambda b: b["items"])
    return exams["items"][0]["id"], reception


def multipart(api: Api, exam: str, filename: bytes, content: bytes, content_type: str = "image/png"):
    boundary = "----hospital-test-boundary"
    body = (f"--{boundary}\r\n".encode()
            + b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            + f"Content-Type: {content_type}\r\n\r\n".encode() + content
            + f"\r\n--{boundary}--\r\n".encode())
    return upload(api, exam, body, f"multipart/form-data; boundary={boundary}", name=None)


def attachments_dir(data: str) -> pathlib.Path:
    return pathlib.Path(data) / "attachments"


def test_a_file_goes_in_and_comes_back_the_same_with_type_etag_and_ranges(system):
    data, _, _, api = system
    exam, _ = new_exam(api)
    content = PNG + os.urandom(200_000)
    status, body = upload(api, exam, content, "image/png", "흉부 X선.png")
    assert status == 201, body
    assert body["fileName"] == "흉부 X선.png" and body["contentType"] == "image/png"
    assert body["size"] == len(content) and body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["uploadedBy"] == "examiner"
    status, headers, got = download(api, exam, body["id"])
    assert status == 200 and got == content
    assert headers["Content-Type"] == "image/png"
    assert headers["ETag"] == f'"{body["sha256"]}"'
    assert headers["Content-Disposition"].startswith("inline;") and "filename*=UTF-8''" in headers["Content-Disposition"]
    status, headers, part = download(api, exam, body["id"], headers={"Range": "bytes=100-199"})
    assert status == 206 and part == content[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(content)}"
    status, _, _ = download(api, exam, body["id"], headers={"If-None-Match": f'"{body["sha256"]}"'})
    assert status == 304
    # Listed for the doctor and the examiner; the file is stored once under its SHA-256.
    for role in ("doctor", "examiner"):
        status, listed = api.call("GET", f"/examinations/{exam}/attachments", role)
        assert status == 200 and [a["id"] for a in listed["items"]] == [body["id"]]
    stored = attachments_dir(data) / "sha256" / body["sha256"][:2] / body["sha256"]
    assert stored.read_bytes() == content
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    # The same file again: a second row, one file.
    status, again = upload(api, exam, content, "image/png", "copy.png")
    assert status == 201 and again["sha256"] == body["sha256"] and again["id"] != body["id"]
    assert len(list((attachments_dir(data) / "sha256").rglob(body["sha256"]))) == 1


def test_roles_and_multipart(system):
    _, _, _, api = system
    exam, _ = new_exam(api)
    pdf = PDF + b"0" * 1000
    status, body = multipart(api, exam, "검사 결과지.pdf".encode(), pdf, "application/pdf")
    assert status == 201 and body["contentType"] == "application/pdf" and body["fileName"] == "검사 결과지.pdf"
    assert upload(api, exam, PNG + b"x", "image/png", role="doctor")[0] == 403  # the doctor reads, not uploads
    assert api.call("GET", f"/examinations/{exam}/attachments", "desk")[0] == 403
    assert download(api, exam, body["id"], role="desk")[0] == 403
    status, headers, got = download(api, exam, body["id"], role="examiner")
    assert status == 200 and got == pdf and headers["Content-Disposition"].startswith("inline;")
    assert download(api, exam, "00000000-0000-0000-0000-000000000000")[0] == 404


def test_what_the_bytes_are_decides_not_what_the_client_says(system):
    data, _, _, api = system
    exam, _ = new_exam(api)
    before = sorted(p.name for p in attachments_dir(data).rglob("*") if p.is_file())
    executable = ELF + os.urandom(4096)
    status, body = upload(api, exam, executable, "image/png", "x-ray.png")
    assert status == 415 and body["type"] == "/problems/unsupported-media-type"
    status, body = upload(api, exam, PDF + b"1" * 300, "image/png", "looks-like.png")  # a PDF claiming PNG
    assert status == 415 and "application/pdf" in body["detail"]
    status, body = upload(api, exam, b"", "image/png", "empty.png")
    assert status == 422 and body["errors"][0]["field"] == "file"
    after = sorted(p.name for p in attachments_dir(data).rglob("*") if p.is_file())
    assert after == before  # nothing kept of any of them, not even a temporary file
    # DICOM: a 128-byte preamble, then DICM.
    dicom = bytes(128) + b"DICM" + os.urandom(500)
    status, body = upload(api, exam, dicom, "application/dicom", "ct.dcm")
    assert status == 201 and body["contentType"] == "application/dicom"
    assert download(api, exam, body["id"])[1]["Content-Disposition"].startswith("attachment;")


def test_names_are_names_never_paths(system):
    data, _, _, api = system
    exam, _ = new_exam(api)
    outside = pathlib.Path(data).parent
    before = set(os.listdir(outside))
    status, body = upload(api, exam, PNG + b"a", "image/png", "../../etc/passwd")
    assert status == 201 and body["fileName"] == "passwd"
    status, body = multipart(api, exam, b"\xff\xfe\xc0 bad name.png", PNG + b"b")
    assert status == 201 and body["fileName"] == "attachment"  # not UTF-8: a plain name instead
    status, body = upload(api, exam, PNG + b"c", "image/png", "bell\u0007.png")
    assert status == 422 and body["errors"][0]["field"] == "fileName"
    assert set(os.listdir(outside)) == before
    for path in pathlib.Path(data).rglob("*"):
        assert "passwd" not in path.name


def test_a_file_over_the_limit_is_refused_before_it_is_read():
    data = tempfile.mkdtemp(prefix="hospital-attachments-")
    try:
        accounts(data)
        process, urls = serve(data, env={"HOSPITAL_ATTACHMENT_MAX_MB": "1"})
        try:
            api = Api.sign_in(urls["gateway"], PASSWORD)
            exam, _ = new_exam(api)
            # Declared 100 MB, and only the first bytes sent: the answer comes at once.
            connection = start_upload(api, exam, declared=100 * 1024 * 1024)
            connection.send(PNG)
            answer = connection.getresponse()
            assert answer.status == 413
            connection.close()
            # Without a declared length (chunked): refused once the limit is passed.
            chunks = (PNG + bytes(64 * 1024 - 8) if i == 0 else bytes(64 * 1024) for i in range(40))
            status, body = upload(api, exam, chunks, "image/png", "big.png")
            assert status == 413 and body["type"] == "/problems/payload-too-large"
            assert not any(p.is_file() for p in attachments_dir(data).rglob("*"))
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_fifty_megabytes_stream_through_the_gateway_without_being_held_in_memory(system):
    data, process, _, api = system
    exam, _ = new_exam(api)
    size = 50 * 1024 * 1024
    digest = hashlib.sha256()

    def chunks():
        block = PNG + os.urandom(1024 * 1024 - 8)
        sent = 0
        while sent < size:
            piece = block if sent == 0 else block[8:] + block[:8]
            piece = piece[: size - sent]
            digest.update(piece)
            sent += len(piece)
            yield piece

    before = rss_kib(process.pid)
    status, body = upload(api, exam, chunks(), "image/png", "large.png", length=size)
    assert status == 201, body
    after_upload = rss_kib(process.pid)
    assert body["size"] == size and body["sha256"] == digest.hexdigest()
    status, _, got = download(api, exam, body["id"])
    assert status == 200 and hashlib.sha256(got).hexdigest() == digest.hexdigest()
    after_download = rss_kib(process.pid)
    print(f"RSS {before / 1024:.1f} MB → {after_upload / 1024:.1f} MB after the upload, "
          f"{after_download / 1024:.1f} MB after the download")
    assert after_upload - before < 30 * 1024
    assert after_download - before < 30 * 1024


def test_the_completion_event_names_the_files_and_downloads_are_audited(system):
    data, _, urls, api = system
    exam, reception = new_exam(api, "감사환자")
    content = PNG + os.urandom(1000)
    status, body = upload(api, exam, content, "image/png", "ecg.png")
    assert status == 201
    assert api.call("POST", f"/examinations/{exam}/perform", "examiner", {"result": "정상"})[0] == 200
    # The event in the local event log: references, never bytes.
    def completed():
        with sqlite3.connect(pathlib.Path(data) / "events.sqlite") as db:
            rows = [r[0] for r in db.execute("SELECT value FROM messages")
                    if b"ExaminationCompleted" in (r[0] if isinstance(r[0], bytes) else r[0].encode())]
        events = [json.loads(r) for r in rows]
        return [e for e in events if e.get("payload", {}).get("examinationId", "").upper() == exam.upper()]

    mine = wait_until(completed, 10, "an ExaminationCompleted for the exam in the event log", every=0.1)
    refs = mine[0]["payload"]["attachments"]
    assert refs == [{"id": body["id"], "contentType": "image/png", "size": len(content), "sha256": body["sha256"]}]
    # Every download is in the audit trail, naming the user and the visit.
    assert download(api, exam, body["id"])[0] == 200
    entries = api.until(
        f"/admin/audit?receptionId={reception}", "admin",
        lambda b: any(e["action"] == "GET /examinations/:id/attachments/:attachmentId" for e in b["items"]))
    download_entries = [e for e in entries["items"] if e["action"] == "GET /examinations/:id/attachments/:attachmentId"]
    assert download_entries[0]["user"] == "doctor" and download_entries[0]["outcome"] == 200


def test_a_process_killed_mid_upload_leaves_no_row_no_file_and_the_temporary_file_is_swept():
    data = tempfile.mkdtemp(prefix="hospital-attachments-")
    try:
        accounts(data)
        env = {"HOSPITAL_ATTACHMENT_GRACE_SECONDS": "1"}
        process, urls = serve(data, env=env)
        api = Api.sign_in(urls["gateway"], PASSWORD)
        exam, _ = new_exam(api)
        connection = start_upload(api, exam, declared=20 * 1024 * 1024)
        connection.send(PNG + os.urandom(4 * 1024 * 1024))
        temporary = attachments_dir(data) / "tmp"
        wait_until(lambda: list(temporary.glob("*.part")) and list(temporary.glob("*.part"))[0].stat().st_size > 1024 * 1024,
                   20, "the upload reaching the disk")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        connection.close()
        assert list(temporary.glob("*.part")), "the temporary file should be there after the kill"
        assert not any(p.is_file() for p in (attachments_dir(data) / "sha256").rglob("*"))
        with sqlite3.connect(pathlib.Path(data) / "examination.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM attachments").fetchone()[0] == 0
        for part in temporary.glob("*.part"):  # untouched for longer than the grace period
            os.utime(part, (time.time() - 60, time.time() - 60))
        process, urls = serve(data, env=env)
        try:
            wait_until(lambda: not list(temporary.glob("*.part")), 20, "the restart sweeping the temporary file")
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)
