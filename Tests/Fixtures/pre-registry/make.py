"""Makes the pre-registry fixture: the reception database as the release before the patient
registry (a8afea5) wrote it, through its own API, on SQLite (reception.sqlite + pii-key) and on
PostgreSQL (reception.sql, a plain pg_dump). Run once with that release's binary:

    HOSPITAL_BINARY=/path/to/a8afea5/hospital HOSPITAL_TEST_POSTGRES_URL=postgres://… \
        python3 Tests/Fixtures/pre-registry/make.py

The resident numbers, names and phone numbers are made up.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "Python"))

from hospital_api import Api, add_accounts, serve  # noqa: E402

# name, chart number, birth date, phone, resident number, department; in order of registration.
VISITS = [
    ("김민수", "P-0001", "1970-01-01", "010-1111-2222", "700101-1234567", "내과"),
    ("김민수", "P-0001", "1970-01-01", "010-1111-3333", None, "내과"),  # newer phone
    ("이영희", None, "1990-05-05", "010-4444-5555", None, "내과"),
    ("이영희", None, "1990-05-05", None, None, "정형외과"),
    ("이영희", None, None, None, None, "내과"),  # another 이영희: no birth date
    ("박철수", "10000008", "1955-12-31", None, None, "내과"),  # the first number the registry would issue
    ("최지우", "C-1", "1980-01-01", None, "800101-2345678", "내과"),
    ("최지우", "C-2", "1980-01-01", None, "800101-2345678", "내과"),  # the same person under two numbers
]


def make(data: str, env: dict) -> None:
    add_accounts(data, "fixture-password-1", roles=("desk",), env=env)
    process, urls = serve(data, env=env)
    try:
        api = Api.sign_in(urls["gateway"], "fixture-password-1", roles=("desk",))
        ids = []
        for name, chart, birth, phone, resident, department in VISITS:
            body = {"patientName": name, "department": department, "symptom": "기침"}
            for key, value in (("patientId", chart), ("birthDate", birth), ("phone", phone), ("residentNumber", resident)):
                if value:
                    body[key] = value
            status, answer = api.call("POST", "/receptions", "desk", body)
            assert status == 201, answer
            ids.append(answer["id"])
        status, answer = api.call("POST", f"/receptions/{ids[0]}/cancel", "desk", {"reason": "환자 귀가"})
        assert status == 200, answer
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        make(data, {})
        shutil.copy(pathlib.Path(data) / "reception.sqlite", HERE / "reception.sqlite")
        shutil.copy(pathlib.Path(data) / "pii-key", HERE / "pii-key")
        subprocess.run(["sqlite3", str(HERE / "reception.sqlite"), "VACUUM"], check=True)
    postgres = os.environ["HOSPITAL_TEST_POSTGRES_URL"]
    name = "fixture_pre_registry"
    subprocess.run(["psql", postgres, "-q", "-c", f"DROP DATABASE IF EXISTS {name}"], check=True)
    subprocess.run(["psql", postgres, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    url = postgres.rsplit("/", 1)[0] + "/" + name
    with tempfile.TemporaryDirectory() as data:
        shutil.copy(HERE / "pii-key", pathlib.Path(data) / "pii-key")
        make(data, {"HOSPITAL_RECEPTION_DATABASE_URL": url})
    dump = subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", url], check=True, capture_output=True, text=True
    ).stdout
    (HERE / "reception.sql").write_text(dump)
    print(json.dumps({"visits": len(VISITS)}))


if __name__ == "__main__":
    main()
