"""Waits that raise a hand, in a real browser: on a system whose clinic layout gives 내과's
waiting an alert time of a few seconds, the desk's board row of a patient nobody called turns
amber by push (with the word, not the colour alone), the 오래 기다리는 환자 panel names them, and
once a doctor calls them the row is back to normal."""

import json
import subprocess

import pytest
from playwright.sync_api import expect

from conftest import PASSWORD, sign_in
from hospital_api import Api, add_accounts, serve


@pytest.fixture
def short_alerts(tmp_path):
    layout = {
        "departments": [
            {"name": "내과", "prefix": "A", "rooms": ["진료실 1", "진료실 2"]},
            {"name": "외과", "prefix": "B", "rooms": ["진료실 3"]},
        ],
        "waitAlerts": [{"stage": "WAITING", "amberMinutes": 0.05, "redMinutes": 60}],
    }
    clinic = tmp_path / "clinic.json"
    clinic.write_text(json.dumps(layout, ensure_ascii=False))
    data = tmp_path / "data"
    data.mkdir()
    add_accounts(str(data), PASSWORD, roles=("desk", "doctor"))
    process, urls = serve(str(data), env={"HOSPITAL_CLINIC_FILE": str(clinic)}, stderr=subprocess.DEVNULL)
    yield urls["gateway"]
    process.terminate()
    process.wait(timeout=30)


def test_a_row_turns_amber_past_its_alert_time_and_the_panel_names_it(browser, short_alerts):
    api = Api.sign_in(short_alerts, PASSWORD, roles=("desk", "doctor"))
    status, visit = api.call("POST", "/receptions", "desk", {"patientName": "기다림", "department": "내과"})
    assert status == 201, visit

    context = browser.new_context(base_url=short_alerts, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, "desk")
    page.wait_for_url("**/desk")
    row = page.locator(f"#board-rows tr[data-reception='{visit['id']}']")
    expect(row).to_be_visible()
    # Three seconds of waiting is past 내과's amber time: the page's refresh brings the colour.
    expect(row).to_have_attribute("data-wait", "amber", timeout=10_000)
    expect(row).to_have_class("wait-amber")
    expect(row.locator(".wait-badge")).to_have_text("주의")
    expect(row.locator(".queue-number")).to_have_text(visit["queueNumber"])
    # The panel is pushed: it names the visit without the page asking again.
    panel = page.locator("#waits-panel")
    expect(panel).to_have_attribute("data-live-state", "open")
    expect(panel.locator(".too-long li")).to_have_count(1, timeout=10_000)
    expect(panel.locator(".too-long li")).to_contain_text(f"{visit['queueNumber']} 기다림 · 내과 · 대기")
    expect(page.locator("#waits-count")).to_have_text("1")

    # Called: the wait for the doctor is over, the row and the panel calm down.
    diagnosis = api.until(f"/diagnoses?receptionId={visit['id']}", "doctor", lambda body: body["items"])["items"][0]
    status, called = api.call("POST", f"/diagnoses/{diagnosis['id']}/call", "doctor", {"room": "진료실 1"})
    assert status == 200, called
    expect(row).to_have_attribute("data-wait", "normal", timeout=10_000)
    expect(row).to_contain_text("호출 1회 · 진료실 1")
    expect(panel.locator(".too-long li")).to_have_count(0, timeout=10_000)
    expect(page.locator("#waits-count")).to_have_text("0")
    context.close()
