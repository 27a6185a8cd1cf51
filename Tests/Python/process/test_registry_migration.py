"""The patient registry's migration on data the release before it wrote (Tests/Fixtures/
pre-registry, made by a8afea5 through its API): each chart number the desk typed becomes one
patient, visits without one are grouped by name and birth date, once, on SQLite and PostgreSQL."""

import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import pytest

from hospital_api import Api, add_accounts, serve

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "Fixtures" / "pre-registry"
PASSWORD = "registry migration password"
POSTGRES = os.environ.get("HOSPITAL_TEST_POSTGRES_URL")


def luhn_ok(number: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def start(data: str, env: dict, log: pathlib.Path, first: bool = True):
    if first:
        add_accounts(data, PASSWORD, roles=("desk",), env=env)
    with open(log, "a") as stderr:
        process, urls = serve(data, env=env, stderr=stderr)
    return process, Api.sign_in(urls["gateway"], PASSWORD, roles=("desk",))


def search(api: Api, body: dict) -> list[dict]:
    status, answer = api.call("POST", "/patients/search", "desk", body)
    assert status == 200, answer
    return answer["items"]


def visits(api: Api, body: dict) -> list[dict]:
    status, answer = api.call("POST", "/receptions/search", "desk", body)
    assert status == 200, answer
    return answer["items"]


def check_migrated(api: Api) -> None:
    [kim] = search(api, {"chartNumber": "P-0001"})
    assert kim["name"] == "김민수" and kim["birthDate"] == "1970-01-01"
    assert kim["phone"] == "010-1111-3333", "the newest visit's phone"
    assert kim["residentNumber"] == "700101-1******", "the sealed number carried over from an older visit"
    assert kim["sex"] == "U"
    kim_visits = visits(api, {"chartNumber": "P-0001"})
    assert [v["status"] for v in kim_visits] == ["RECEIVED", "CANCELED"]
    assert all(v["patientId"] == kim["id"] for v in kim_visits)

    lees = search(api, {"name": "이영희"})
    assert sorted(p["birthDate"] or "" for p in lees) == ["", "1990-05-05"]
    for lee in lees:
        assert len(lee["chartNumber"]) == 8 and luhn_ok(lee["chartNumber"]), lee["chartNumber"]
        assert lee["chartNumber"] != "10000008", "a number the desk typed is never issued again"
        expected = 2 if lee["birthDate"] else 1
        assert len(visits(api, {"patientId": lee["id"]})) == expected

    [park] = search(api, {"chartNumber": "10000008"})
    assert park["name"] == "박철수"

    # One person under two numbers: both records exist, the resident number stays with one
    # of them (an administrator merges them).
    choi = search(api, {"name": "최지우"})
    assert sorted(p["chartNumber"] for p in choi) == ["C-1", "C-2"]
    assert sorted(p["residentNumber"] or "" for p in choi) == ["", "800101-2******"]
    assert len(search(api, {"residentNumber": "800101-2345678"})) == 1

    # Six patients in all, each visit with exactly one.
    everyone = search(api, {"birthDate": "1970-01-01"}) + search(api, {"name": "이"}) + park_and_choi(api)
    assert len({p["id"] for p in everyone}) == 6

    # A returning patient's visit, without retyping anything.
    status, visit = api.call("POST", "/receptions", "desk", {"patientId": kim["id"], "department": "내과"})
    assert status == 201, visit
    assert visit["chartNumber"] == "P-0001" and visit["patientName"] == "김민수"


def park_and_choi(api: Api) -> list[dict]:
    return search(api, {"name": "박"}) + search(api, {"name": "최"})


def drill(data: str, env: dict) -> None:
    log = pathlib.Path(data) / "serve.log"
    process, api = start(data, env, log)
    try:
        check_migrated(api)
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    assert "8 visits migrated into 6 patients (4 by chart number, 2 by name and birth date; 1 resident numbers shared" in text, text[-2000:]
    # Started again: the migration does not run twice, nothing is duplicated.
    process, api = start(data, env, log, first=False)
    try:
        assert text.count("visits migrated into") == log.read_text().count("visits migrated into")
        [kim] = search(api, {"chartNumber": "P-0001"})
        assert len(visits(api, {"patientId": kim["id"]})) == 3
        assert len(search(api, {"name": "이영희"})) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(autouse=True)
def notices(monkeypatch):
    """The migration says what it did at notice level."""
    monkeypatch.setenv("HOSPITAL_TEST_LOG_LEVEL", "notice")


def test_migration_of_pre_registry_visits_on_sqlite():
    with tempfile.TemporaryDirectory() as data:
        shutil.copy(FIXTURE / "reception.sqlite", pathlib.Path(data) / "reception.sqlite")
        shutil.copy(FIXTURE / "pii-key", pathlib.Path(data) / "pii-key")
        os.chmod(pathlib.Path(data) / "pii-key", 0o600)
        drill(data, {})


@pytest.mark.skipif(not POSTGRES, reason="HOSPITAL_TEST_POSTGRES_URL is not set")
def test_migration_of_pre_registry_visits_on_postgresql():
    name = "t_registry_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", POSTGRES, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    url = POSTGRES.rsplit("/", 1)[0] + "/" + name
    try:
        subprocess.run(
            ["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(FIXTURE / "reception.sql")],
            check=True, capture_output=True)
        with tempfile.TemporaryDirectory() as data:
            shutil.copy(FIXTURE / "pii-key", pathlib.Path(data) / "pii-key")
            os.chmod(pathlib.Path(data) / "pii-key", 0o600)
            drill(data, {"HOSPITAL_RECEPTION_DATABASE_URL": url})
    finally:
        subprocess.run(["psql", POSTGRES, "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)
