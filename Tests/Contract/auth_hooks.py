"""Schemathesis hooks: each operation is called as the first role its `x-roles` names.

The tokens come from the environment (HOSPITAL_TOKEN_DESK, _DOCTOR, _EXAMINER, _ADMIN), signed
in through `POST /auth/token` by `.ci/run` before the run. Public operations go without one.
The administrator's token is used for the domain's admin operations (a merge of patients), not
for the operators' `/admin/...` ones: fuzzing `POST /admin/sessions/end` would end the run's own
sessions part way.
"""

import os

import schemathesis

TOKENS = {
    role: os.environ.get(f"HOSPITAL_TOKEN_{role.upper()}", "") for role in ("desk", "doctor", "examiner", "admin")
}


@schemathesis.hook
def before_call(context, case, kwargs):
    roles = case.operation.definition.raw.get("x-roles") or []
    if roles and roles[0] == "admin" and case.operation.path.startswith("/admin/"):
        return
    if roles and TOKENS.get(roles[0]):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS[roles[0]]}"}


# What each signed-in operation answered, so CI can tell a run that reached the API's logic
# from one where every call bounced off as 401.
ANSWERS: dict = {}


@schemathesis.hook
def after_call(context, case, response):
    if case.operation.definition.raw.get("x-roles"):
        key = f"{case.method.upper()} {case.operation.path}"
        ANSWERS.setdefault(key, set()).add(response.status_code)


def _write_summary():
    path = os.environ.get("HOSPITAL_CONTRACT_SUMMARY")
    if path:
        with open(path, "w") as out:
            for key, statuses in sorted(ANSWERS.items()):
                out.write(f"{key}\t{' '.join(map(str, sorted(statuses)))}\n")


import atexit  # noqa: E402

atexit.register(_write_summary)
