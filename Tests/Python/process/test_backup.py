"""Backups of the embedded default, by real processes: the restore drill (visits, uploads and
sign-ins going on while `hospital backup` runs; more after it; restored into a new directory,
started, and checked), and what a backup or a restore refuses."""

import fcntl
import hashlib
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from hospital_api import Api, add_accounts, binary, download, ready, serve, upload
from waiting import wait_until

PASSWORD = "backup drill password"


def run(*args: str, env=None, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary(), *args], capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn,
        env={**os.environ, **(env or {})})


def png(seed: int, size: int) -> bytes:
    """A file the examination service takes as a PNG: the signature, then bytes of its own."""
    body = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    return b"\x89PNG\r\n\x1a\n" + body[: size - 8]


def visit_with_file(api: Api, name: str, content: bytes) -> dict:
    """A whole visit whose exam has a result file: registered, ordered, file attached, performed, completed."""
    reception = api.register(name)
    diagnosis = api.diagnosis_of(reception)
    status, _ = api.call("POST", f"/diagnoses/{diagnosis}/prescriptions", "doctor",
                         {"examinations": [{"code": "XR", "name": "흉부 X선"}]})
    assert status == 200
    exam = api.until(f"/examinations?diagnosisId={diagnosis}", "examiner", lambda b: b["items"])["items"][0]["id"]
    status, attachment = upload(api, exam, content, "image/png", name=f"{name}.png")
    assert status == 201, (status, attachment)
    assert api.call("POST", f"/examinations/{exam}/perform", "examiner", {"result": "정상"})[0] == 200
    api.until(f"/diagnoses/{diagnosis}", "doctor", lambda b: b["status"] == "EXAM_DONE")
    assert api.call("POST", f"/diagnoses/{diagnosis}/complete", "doctor", {"note": "이상 없음"})[0] == 200
    api.until(f"/patientManagements/{reception}", "desk", lambda b: b["status"] == "COMPLETED")
    return {"reception": reception, "diagnosis": diagnosis, "exam": exam, "attachment": attachment["id"],
            "sha256": hashlib.sha256(content).hexdigest(), "status": "COMPLETED"}


def list_all(api: Api, path: str, role: str) -> list[dict]:
    """Every item of a list, page by page (`after=next`)."""
    items, after = [], None
    while True:
        separator = "&" if "?" in path else "?"
        status, body = api.call("GET", f"{path}{separator}limit=200" + (f"&after={after}" if after else ""), role)
        assert status == 200, (path, status, body)
        items += body["items"]
        after = body.get("next")
        if not after:
            return items


class Load(threading.Thread):
    """Registrations (and now and then a sign-in) one after another until stopped, each
    remembered with the moment it was answered."""

    def __init__(self, api: Api):
        super().__init__(daemon=True)
        self.api, self.stop, self.answered, self.failures, self.sign_ins = api, threading.Event(), [], [], 0

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            status, body = self.api.call("POST", "/receptions", "desk", {"patientName": f"부하{n}", "department": "내과"})
            if status == 201:
                self.answered.append((body["id"], time.monotonic()))
            else:
                self.failures.append((status, body))
            if n % 10 == 0:
                status, _ = Api(self.api.base, {}).call("POST", "/auth/token", None,
                                                         {"username": "desk", "password": PASSWORD})
                self.sign_ins += status == 200
                if status != 200:
                    self.failures.append(("sign-in", status))


def stop(process):
    process.terminate()
    process.wait(timeout=60)


def drill(original: dict, replacement: dict):
    """The restore drill: a system on `original`'s settings (its databases), backed up while it
    works, restored into a new data directory and `replacement`'s (empty) databases, started and
    checked."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="hospital-backup-drill-"))
    data, backups, restored = root / "data", root / "backups", root / "restored"
    key = root / "backup-key"
    key.write_text(run("backup", "--new-key").stdout)
    add_accounts(str(data), PASSWORD, env=original)
    process, urls = serve(str(data), env=original)
    try:
        api = Api.sign_in(urls["gateway"], PASSWORD)
        # Before: whole visits with files (one of several encryption chunks), a cancel, a visit waiting.
        before = [visit_with_file(api, f"백업전{i}", png(i, 40_000 + i)) for i in range(4)]
        before.append(visit_with_file(api, "큰파일", png(99, 2_621_440 + 17)))
        canceled = api.cancel("취소환자")
        waiting = api.register("대기환자")
        api.diagnosis_of(waiting)

        load = Load(api)
        load.start()
        wait_until(lambda: len(load.answered) >= 20, 30, "registrations under way")
        began = time.monotonic()
        made = run("backup", "--data-dir", str(data), "--to", str(backups), "--key-file", str(key), env=original)
        ended = time.monotonic()
        assert made.returncode == 0, made.stdout + made.stderr
        wait_until(lambda: sum(1 for _, at in load.answered if at > ended) >= 20, 30, "registrations after the backup")
        load.stop.set()
        load.join(30)
        after = visit_with_file(api, "백업후", png(7, 5_000))
        print(made.stdout)
        assert not load.failures, load.failures[:5]
        assert load.sign_ins > 0
    finally:
        stop(process)

    backup = pathlib.Path(made.stdout.split("backup: ", 1)[1].split("\n", 1)[0])
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["encryption"]["cipher"] == "AES-256-GCM"
    kinds = {entry["kind"] for entry in manifest["files"]}
    assert {"database", "attachment", "key", "installation"} <= kinds
    # Encrypted: no file of the backup holds a key or a database in clear.
    pii_key = (data / "pii-key").read_bytes().strip()
    for entry in manifest["files"]:
        stored = (backup / entry["path"]).read_bytes()
        assert stored.startswith(b"HOSPBAK1") and pii_key not in stored and b"SQLite format 3" not in stored

    done = run("restore", "--from", str(backup), "--data-dir", str(restored), "--key-file", str(key), env=replacement)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sessions ended" in done.stdout

    process, urls = serve(str(restored), env=replacement)
    try:
        old = api
        api = Api.sign_in(urls["gateway"], PASSWORD)  # the accounts sign in
        # A token from before the restore is void: a restore ends every session.
        assert Api(urls["gateway"], old.tokens).call("GET", "/receptions", "desk")[0] == 401

        for visit in before:
            assert api.call("GET", f"/patientManagements/{visit['reception']}", "desk")[1]["status"] == "COMPLETED"
            assert len(api.call("GET", f"/diagnoses?receptionId={visit['reception']}", "doctor")[1]["items"]) == 1
            assert len(api.call("GET", f"/examinations?diagnosisId={visit['diagnosis']}", "examiner")[1]["items"]) == 1
            status, _, body = download(api, visit["exam"], visit["attachment"])
            assert status == 200 and hashlib.sha256(body).hexdigest() == visit["sha256"]
        assert api.call("GET", f"/patientManagements/{canceled}", "desk")[1]["status"] == "CANCELED"
        assert api.call("GET", f"/patientManagements/{waiting}", "desk")[1]["status"] == "RECEIVED"
        # What was done after the backup is not there.
        assert api.call("GET", f"/receptions/{after['reception']}", "desk")[0] == 404

        receptions = {r["id"] for r in list_all(api, "/receptions", "desk")}
        answered_before = [id for id, at in load.answered if at < began]
        answered_after = [id for id, at in load.answered if at > ended]
        assert set(answered_before) <= receptions, "a registration answered before the backup began is missing"
        assert not set(answered_after) & receptions, "a registration answered after the backup ended is there"

        # The services agree, once each has taken up the event log from its own position: no
        # board row or diagnosis without its registration, and no registration without them.
        seen = {}

        def agreed():
            board = [row["receptionId"] for row in list_all(api, "/patientManagements", "desk")]
            diagnoses = [d["receptionId"] for d in list_all(api, "/diagnoses", "doctor")]
            seen.update(board=len(board), diagnoses=len(diagnoses), receptions=len(receptions),
                        board_only=set(board) - receptions, not_on_board=receptions - set(board),
                        diagnosis_only=set(diagnoses) - receptions, no_diagnosis=receptions - set(diagnoses))
            return (len(board) == len(set(board)) and len(diagnoses) == len(set(diagnoses))
                    and set(board) == receptions and set(diagnoses) == receptions) or None

        wait_until(agreed, 60, lambda: f"the restored services did not come to agree: {seen}")

        verified = run("audit", "verify", "--data-dir", str(restored), env=replacement)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "BROKEN" not in verified.stdout
    finally:
        stop(process)
    shutil.rmtree(root, ignore_errors=True)
    return manifest


def test_restore_drill_everything_answered_before_the_backup_is_back_once_and_the_services_agree():
    manifest = drill({}, {})
    assert not any(e["kind"] == "postgres" for e in manifest["files"])


POSTGRES = os.environ.get("HOSPITAL_TEST_POSTGRES_URL")


def databases(prefix: str) -> dict:
    """An empty PostgreSQL database for each service and the gateway, as the settings that name them."""
    settings = {}
    for owner in ("reception", "diagnosis", "examination", "patient-management", "gateway"):
        name = f"{prefix}_{owner.replace('-', '_')}"
        subprocess.run(["psql", POSTGRES, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        settings[f"HOSPITAL_{owner.upper().replace('-', '_')}_DATABASE_URL"] = POSTGRES.rsplit("/", 1)[0] + "/" + name
    return settings


@pytest.mark.skipif(not POSTGRES, reason="needs HOSPITAL_TEST_POSTGRES_URL (CI sets it)")
def test_restore_drill_on_postgresql_every_database_dumped_as_of_the_same_moment():
    run_id = f"hb{os.getpid()}{int(time.time()) % 100000}"
    manifest = drill(databases(f"{run_id}_a"), databases(f"{run_id}_b"))
    dumps = {e["path"] for e in manifest["files"] if e["kind"] == "postgres"}
    assert dumps == {f"postgres/{owner}.pgdump"
                     for owner in ("reception", "diagnosis", "examination", "patient-management", "gateway")}


@pytest.fixture(scope="module")
def served():
    """A small system with one visit and its file, serving."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="hospital-backup-faults-"))
    data = root / "data"
    add_accounts(str(data), PASSWORD)
    process, urls = serve(str(data))
    api = Api.sign_in(urls["gateway"], PASSWORD)
    visit_with_file(api, "백업환자", png(1, 300_000))
    yield root, data, api
    stop(process)
    shutil.rmtree(root, ignore_errors=True)


def whole_backups(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in directory.iterdir() if (p / "manifest.json").exists()) if directory.exists() else []


def test_a_backup_that_cannot_be_written_fails_loudly_leaves_nothing_that_looks_whole_and_the_system_serves(served):
    root, data, api = served
    backups = root / "full"

    def small_disk():
        # A file may grow to 200 kB: the copy of a database or of the 300 kB file hits the end.
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    full = run("backup", "--data-dir", str(data), "--to", str(backups), preexec_fn=small_disk)
    assert full.returncode == 1 and "backup failed" in full.stdout, full.stdout + full.stderr
    assert list(backups.iterdir()) == [], "a failed backup left files behind"
    assert api.call("POST", "/receptions", "desk", {"patientName": "실패후", "department": "내과"})[0] == 201

    # Backups inside the data directory they back up: refused, by a backup and by serve at start.
    inside = run("backup", "--data-dir", str(data), "--to", str(data / "backups"))
    assert inside.returncode == 1 and "inside the data directory" in inside.stdout, inside.stdout
    starting = run("serve", "--data-dir", str(data), "--backup-every", "1h", "--backup-to", str(data / "backups"))
    assert starting.returncode != 0 and "inside the data directory" in starting.stdout + starting.stderr

    # A destination that is not a directory.
    (root / "a-file").write_text("x")
    refused = run("backup", "--data-dir", str(data), "--to", str(root / "a-file" / "backups"))
    assert refused.returncode == 1 and "cannot create" in refused.stdout, refused.stdout

    # A second backup while one runs (it holds the data directory's backup lock).
    with open(data / ".backup.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        second = run("backup", "--data-dir", str(data), "--to", str(root / "second"))
        fcntl.flock(held, fcntl.LOCK_UN)
    assert second.returncode == 1 and "another backup" in second.stdout, second.stdout
    assert whole_backups(root / "second") == []

    # Retention: three backups with --keep 2 leave the newest two, and another installation's
    # backup in the same directory alone.
    neighbour = root / "neighbour-data"
    add_accounts(str(neighbour), PASSWORD, roles=("desk",))
    theirs = run("backup", "--data-dir", str(neighbour), "--to", str(root / "kept"))
    assert theirs.returncode == 0, theirs.stdout
    kept = [run("backup", "--data-dir", str(data), "--to", str(root / "kept"), "--keep", "2") for _ in range(3)]
    assert all(k.returncode == 0 for k in kept)
    names = [k.stdout.split("backup: ", 1)[1].split("\n", 1)[0] for k in kept]
    neighbours = theirs.stdout.split("backup: ", 1)[1].split("\n", 1)[0]
    assert [str(p) for p in whole_backups(root / "kept")] == sorted(names[1:] + [neighbours])

    # Result files the database names but the attachments directory lacks: not a whole backup.
    (root / "empty-attachments").mkdir()
    lacking = run("backup", "--data-dir", str(data), "--to", str(root / "lacking"),
                  "--attachments-dir", str(root / "empty-attachments"))
    assert lacking.returncode == 1 and "not in the attachments directory" in lacking.stdout, lacking.stdout
    unmounted = run("backup", "--data-dir", str(data), "--to", str(root / "lacking"),
                    "--attachments-dir", str(root / "not-mounted"))
    assert unmounted.returncode == 1 and "not there" in unmounted.stdout, unmounted.stdout
    assert whole_backups(root / "lacking") == []


def refused(backup: pathlib.Path, target: pathlib.Path, *args: str) -> str:
    """Restores `backup`, expecting a refusal that writes nothing; returns what it said."""
    outcome = run("restore", "--from", str(backup), "--data-dir", str(target), *args)
    assert outcome.returncode == 1 and "restore refused" in outcome.stdout, outcome.stdout + outcome.stderr
    assert not target.exists() or not any(target.iterdir()), "a refused restore wrote files"
    assert not list(target.parent.glob(f".{target.name}.restoring-*"))
    return outcome.stdout


def test_a_restore_refuses_a_damaged_foreign_or_newer_backup_and_a_directory_in_use(served):
    root, data, _ = served
    made = run("backup", "--data-dir", str(data), "--to", str(root / "clear"))
    assert made.returncode == 0, made.stdout
    clear = whole_backups(root / "clear")[-1]
    manifest = json.loads((clear / "manifest.json").read_text())
    assert manifest.get("encryption") is None
    assert not (clear / "data" / "pii-key").exists(), "a clear backup holds the resident numbers' key"
    target = root / "target"

    assert "holds no keys" in refused(clear, target)
    # Where a backup key is in use, an unencrypted backup may be a replaced one: refused unless expected.
    key = root / "key-clear"
    key.write_text(run("backup", "--new-key").stdout)
    assert "not encrypted" in refused(clear, target, "--key-file", str(key), "--keys-from", str(data))

    def damaged(name: str, change) -> pathlib.Path:
        copy = root / name
        shutil.copytree(clear, copy)
        change(copy)
        return copy

    def cut(copy):
        with open(copy / "data" / "diagnosis.sqlite", "r+b") as f:
            f.truncate(os.path.getsize(copy / "data" / "diagnosis.sqlite") - 100)

    def flip(copy):
        path = copy / "data" / "reception.sqlite"
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(raw)

    said = refused(damaged("cut", cut), target, "--keys-from", str(data))
    assert "data/diagnosis.sqlite" in said and "cut short" in said
    said = refused(damaged("flipped", flip), target, "--keys-from", str(data))
    assert "data/reception.sqlite" in said and "changed or damaged" in said

    # The manifest of another installation's backup, beside these files.
    other = root / "other-data"
    add_accounts(str(other), PASSWORD, roles=("desk",))
    assert run("backup", "--data-dir", str(other), "--to", str(root / "other")).returncode == 0
    foreign = damaged("foreign", lambda copy: shutil.copy(whole_backups(root / "other")[-1] / "manifest.json",
                                                           copy / "manifest.json"))
    assert "another installation" in refused(foreign, target, "--keys-from", str(data))

    def newer(copy):
        changed = json.loads((copy / "manifest.json").read_text())
        changed["migrations"].append("ReceptionService.AFutureMigration")
        (copy / "manifest.json").write_text(json.dumps(changed))

    assert "newer build" in refused(damaged("newer", newer), target, "--keys-from", str(data))
    assert "manifest.json" in refused(damaged("no-manifest", lambda c: (c / "manifest.json").unlink()), target)

    def forged_keys(copy):
        changed = json.loads((copy / "manifest.json").read_text())
        shutil.copy(data / "pii-key", copy / "data" / "pii-key")
        changed["files"].append({"path": "data/pii-key", "kind": "key", "size": (data / "pii-key").stat().st_size,
                                 "sha256": hashlib.sha256((data / "pii-key").read_bytes()).hexdigest()})
        (copy / "manifest.json").write_text(json.dumps(changed))

    assert "lists keys" in refused(damaged("forged-keys", forged_keys), target, "--keys-from", str(data))

    def outside(copy):
        changed = json.loads((copy / "manifest.json").read_text())
        changed["files"][0]["path"] = "data/../../../../etc/os-release"
        (copy / "manifest.json").write_text(json.dumps(changed))

    said = refused(damaged("outside", outside), target, "--keys-from", str(data))
    assert "outside the backup" in said and "PRETTY_NAME" not in said

    # A data directory a server runs on is never restored over, even when told to replace it.
    served_over = run("restore", "--from", str(clear), "--data-dir", str(data), "--keys-from", str(data), "--replace")
    assert served_over.returncode == 1 and "being served" in served_over.stdout, served_over.stdout

    # Encrypted: the wrong key, an edited manifest, a changed byte.
    keys = [root / "key-a", root / "key-b"]
    for k in keys:
        k.write_text(run("backup", "--new-key").stdout)
    assert run("backup", "--data-dir", str(data), "--to", str(root / "sealed"), "--key-file", str(keys[0])).returncode == 0
    sealed = whole_backups(root / "sealed")[-1]
    assert "the key given is" in refused(sealed, target, "--key-file", str(keys[1]))

    def edited(copy):
        changed = json.loads((copy / "manifest.json").read_text())
        changed["createdAt"] = "2020-01-01T00:00:00.000Z"
        (copy / "manifest.json").write_text(json.dumps(changed))

    copy = root / "sealed-edited"
    shutil.copytree(sealed, copy)
    edited(copy)
    assert "seal does not verify" in refused(copy, target, "--key-file", str(keys[0]))
    copy = root / "sealed-flipped"
    shutil.copytree(sealed, copy)
    flip(copy)
    assert "changed or damaged" in refused(copy, target, "--key-file", str(keys[0]))

    # A data directory in use is not overwritten; --replace keeps it aside.
    target.mkdir(exist_ok=True)
    (target / "reception.sqlite").write_text("someone's data")
    said = run("restore", "--from", str(sealed), "--data-dir", str(target), "--key-file", str(keys[0]))
    assert said.returncode == 1 and "not empty" in said.stdout
    assert (target / "reception.sqlite").read_text() == "someone's data"
    replaced = run("restore", "--from", str(sealed), "--data-dir", str(target), "--key-file", str(keys[0]), "--replace")
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    aside = list(root.glob("target.before-restore-*"))
    assert len(aside) == 1 and (aside[0] / "reception.sqlite").read_text() == "someone's data"
    assert (target / "pii-key").read_bytes() == (data / "pii-key").read_bytes()
    verified = run("audit", "verify", "--data-dir", str(target))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def metric(base: str, name: str) -> float | None:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_serve_backs_up_on_schedule_reports_it_and_a_failing_schedule_does_not_stop_serving():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hospital-backup-schedule-"))
    data, backups = root / "data", root / "backups"
    add_accounts(str(data), PASSWORD, roles=("desk",))
    (root / "a-file").write_text("x")
    process, urls = serve(str(data), "--backup-every", "1h", "--backup-to", str(backups))
    failing, failing_urls = serve(str(root / "other-data"), "--backup-every", "1h",
                                  "--backup-to", str(root / "a-file" / "backups"))
    try:
        gateway = urls["gateway"]
        # None in the directory: one at once, reported on the gateway's port.
        made = wait_until(lambda: whole_backups(backups), 60, "the first scheduled backup")
        assert len(made) == 1
        manifest = json.loads((made[0] / "manifest.json").read_text())
        assert {e["path"] for e in manifest["files"]} >= {"data/reception.sqlite", "data/events.sqlite"}
        wait_until(lambda: (metric(gateway, "hospital_backup_last_success_timestamp_seconds") or 0) > 0, 30,
                   "the last success on /metrics")
        assert metric(gateway, "hospital_backup_interval_seconds") == 3600
        assert metric(gateway, "hospital_backup_size_bytes") == sum(e["size"] for e in manifest["files"])
        assert metric(gateway, "hospital_backup_failures_total") == 0

        # A backup that cannot be written is counted and logged; the process stays ready.
        other = failing_urls["gateway"]
        wait_until(lambda: (metric(other, "hospital_backup_failures_total") or 0) >= 1, 60, "a counted failure")
        assert metric(other, "hospital_backup_last_success_timestamp_seconds") == 0
        assert ready(other)
    finally:
        stop(process)
        stop(failing)
    shutil.rmtree(root, ignore_errors=True)
