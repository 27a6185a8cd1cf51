"""The waiting-room display (대기실 현황판) in a real browser: a TV signed in as a `display`
account (or paired as a display device) shows a doctor's call within a second, with the masked name and the room, never the
full name; it gets changes pushed, with no polling request in its network log."""

import time
import urllib.parse
import uuid

from playwright.sync_api import expect

from conftest import PASSWORD
from hospital_api import Api


def test_a_call_shows_on_the_display_within_a_second_masked_and_pushed(new_context, base_url):
    api = Api.sign_in(base_url, PASSWORD, roles=("desk", "doctor"))
    # A department no other test of this shared system uses: its display shows only this visit.
    department, room = "이비인후과", "진료실 6"
    name = "홍" + chr(0xAC00 + uuid.uuid4().int % 11172) + "동"
    status, visit = api.call("POST", "/receptions", "desk", {"patientName": name, "department": department})
    assert status == 201, visit
    number = visit["queueNumber"]
    assert number.startswith("E-"), number
    masked = name[0] + "*" + name[-1]

    tv = new_context("display").new_page()
    requests = []
    tv.on("request", lambda request: requests.append((time.monotonic(), request.url)))
    tv.goto("/display/" + urllib.parse.quote(department))
    expect(tv.locator("#display-next")).to_contain_text(f"{number} {masked}")

    diagnosis = api.until(f"/diagnoses?receptionId={visit['id']}", "doctor", lambda body: body["items"])["items"][0]
    opened = time.monotonic()
    status, called = api.call("POST", f"/diagnoses/{diagnosis['id']}/call", "doctor", {"room": room})
    assert status == 200, called
    called_at = time.monotonic()
    line = tv.locator("#display-calling li", has_text=number)
    expect(line).to_have_text(f"{number} {masked} → {room}", timeout=1_000)
    shown_after = time.monotonic() - called_at
    print(f"display: the call showed {shown_after:.3f} s after the doctor's answer")
    expect(line).to_have_class("display-call blink")
    # Never the full name, anywhere on the page.
    assert name not in tv.content()

    # The same doctor's recall shows as a new call; an undo takes it back off the display.
    status, recalled = api.call("POST", f"/diagnoses/{diagnosis['id']}/call", "doctor", {"room": room})
    assert status == 200 and recalled["calls"] == 2, recalled
    status, undone = api.call("POST", f"/diagnoses/{diagnosis['id']}/undo", "doctor")
    assert status == 200 and undone["calls"] == 1, undone
    status, started = api.call("POST", f"/diagnoses/{diagnosis['id']}/start", "doctor")
    assert status == 200 and started["queueState"] == "IN_CONSULTATION", started
    expect(tv.locator("#display-calling li", has_text=number)).to_have_count(0, timeout=2_000)

    # Pushed, not polled: after the page loaded, one request for the stream and nothing more.
    tv.wait_for_timeout(2_500)
    later = [url for at, url in requests if at > opened]
    assert later == [], f"the display asked the server again: {later}"
    streams = [url for _, url in requests if url.endswith("/events")]
    assert len(streams) == 1, streams


def test_a_display_device_is_paired_with_its_code_reads_only_the_display_and_ends_when_revoked(new_context, base_url):
    """A long-lived display device: an administrator issues it (its code shown once), a TV's
    browser is paired with the code, opens the display and nothing else, and is signed out once
    the administrator revokes it."""
    api = Api.sign_in(base_url, PASSWORD, roles=("admin",))
    label = "1층 TV " + uuid.uuid4().hex[:6]
    status, device = api.call("POST", "/admin/devices", "admin", {"label": label})
    assert status == 201, device
    assert device["label"] == label and len(device["code"]) >= 40, device
    status, bad = api.call("POST", "/admin/devices", "admin", {"label": " "})
    assert status == 422, bad

    status, twice = api.call("POST", "/admin/devices", "admin", {"label": label})
    assert status == 409, twice

    tv = new_context().new_page()
    tv.goto("/display/pair")
    tv.get_by_label("기기 코드").fill("not-a-device-code-at-all")
    tv.get_by_role("button", name="연결", exact=True).click()
    expect(tv.locator("[role=alert]").first).to_contain_text("연결할 수 없습니다")
    # A person's session secret is no device code.
    desk = new_context("desk")
    desk_secret = next(c for c in desk.cookies() if c["name"] == "hospital_session")["value"]
    tv.get_by_label("기기 코드").fill(desk_secret)
    tv.get_by_role("button", name="연결", exact=True).click()
    expect(tv.locator("[role=alert]").first).to_contain_text("연결할 수 없습니다")
    tv.get_by_label("기기 코드").fill(device["code"])
    tv.get_by_role("button", name="연결", exact=True).click()
    tv.wait_for_url("**/display")
    tv.goto("/display/" + urllib.parse.quote("내과"))
    expect(tv.locator("#display-next")).to_be_attached()
    # The cookie outlives the browser's session: a TV that restarts is still paired.
    session = next(c for c in tv.context.cookies() if c["name"] == "hospital_session")
    assert session["expires"] > time.time() + 300 * 86_400, session
    # Nothing but the display.
    response = tv.goto("/desk")
    assert "/desk" not in tv.url or response.status in (401, 403), (tv.url, response.status)

    # The code worked once: another browser cannot pair with it.
    other = new_context().new_page()
    other.goto("/display/pair")
    other.get_by_label("기기 코드").fill(device["code"])
    other.get_by_role("button", name="연결", exact=True).click()
    expect(other.locator("[role=alert]").first).to_contain_text("연결할 수 없습니다")

    status, listed = api.call("GET", "/admin/devices", "admin")
    assert status == 200, listed
    mine = [d for d in listed["items"] if d["label"] == label]
    issued = next(d for d in mine if d["id"] == device["id"])
    assert issued["endReason"] == "paired", issued
    paired = next(d for d in mine if d.get("endedAt") is None)
    assert paired["id"] != device["id"] and paired.get("code") is None, paired

    status, ended = api.call("POST", "/admin/sessions/end", "admin", {"id": paired["id"]})
    assert status == 200 and ended["ended"] == 1, ended
    tv.goto("/display/" + urllib.parse.quote("내과"))
    tv.wait_for_url("**/login**")
