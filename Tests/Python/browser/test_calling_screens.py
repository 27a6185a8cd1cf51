"""호출 from the doctor's screen, in a real browser: the doctor chooses a room (remembered), sees
the department's queue with its numbers, calls (the waiting room's display shows it within a
second, masked), calls again, takes a wrong click back, marks a no-show after the clinic's
number of calls, and begins the consultation; a step someone else's step overtook is refused in
words naming who and where. The examiner calls to an exam room the same way."""

import time
import urllib.parse
import uuid

from playwright.sync_api import expect

from conftest import PASSWORD
from hospital_api import Api


def test_the_doctor_calls_from_the_screen_and_the_display_follows(new_context, base_url):
    api = Api.sign_in(base_url, PASSWORD, roles=("desk", "doctor"))
    # A department no other test of this shared system uses.
    department, room = "가정의학과", "진료실 7"
    name = "김" + chr(0xAC00 + uuid.uuid4().int % 11172) + "수"
    status, visit = api.call("POST", "/receptions", "desk", {"patientName": name, "department": department})
    assert status == 201, visit
    number = visit["queueNumber"]
    assert number.startswith("F-"), number
    masked = name[0] + "*" + name[-1]

    tv = new_context("display").new_page()
    tv.goto("/display/" + urllib.parse.quote(department))
    expect(tv.locator("#display-next")).to_contain_text(f"{number} {masked}")

    doctor = new_context("doctor").new_page()
    doctor.goto("/doctor")
    expect(doctor.locator("#room-now")).to_contain_text("진료실을 고르면")
    # Without a room, every department's worklist is pushed too.
    expect(doctor.locator("#worklist-rows")).to_have_attribute("data-live-state", "open")
    expect(doctor.locator("#worklist-rows tr", has_text=name)).to_be_visible()
    doctor.get_by_label("진료실", exact=True).select_option(room)
    doctor.get_by_role("button", name="선택", exact=True).click()
    expect(doctor.locator("#room-now")).to_contain_text(room)
    # Remembered: the page opened again still works in that room.
    doctor.goto("/doctor")
    expect(doctor.locator("#room-now")).to_contain_text(room)

    # The room's queue is pushed: a visit registered now appears without the page asking.
    expect(doctor.locator("#worklist-rows")).to_have_attribute("data-live-state", "open")
    later_name = "박" + chr(0xAC00 + uuid.uuid4().int % 11172) + "영"
    status, later = api.call("POST", "/receptions", "desk", {"patientName": later_name, "department": department})
    assert status == 201, later
    registered = time.monotonic()
    expect(doctor.locator("#worklist-rows tr", has_text=later_name)).to_be_visible(timeout=1_500)
    print(f"worklist: the new visit showed {time.monotonic() - registered:.3f} s after its registration answered")

    row = doctor.locator("#worklist-rows tr", has_text=name)
    expect(row.locator(".queue-number")).to_have_text(number)
    expect(row).to_contain_text("대기")
    row.get_by_role("button", name="호출", exact=True).click()
    clicked = time.monotonic()
    expect(doctor.locator(".notice, [role=status]").first).to_contain_text("호출했습니다")
    line = tv.locator("#display-calling li", has_text=number)
    expect(line).to_have_text(f"{number} {masked} → {room}", timeout=1_500)
    print(f"display: the screen's call showed {time.monotonic() - clicked:.3f} s after the click")
    assert name not in tv.content()
    expect(row).to_contain_text("호출 1회")

    # 재호출, and a wrong click taken back.
    row.get_by_role("button", name="재호출", exact=True).click()
    expect(row).to_contain_text("호출 2회")
    row.get_by_role("button", name="되돌리기 (재호출)", exact=True).click()
    expect(doctor.locator(".notice, [role=status]").first).to_contain_text("되돌렸습니다")
    expect(row).to_contain_text("호출 1회")

    # 부재 only after the clinic's three calls.
    expect(row.get_by_role("button", name="부재", exact=True)).to_have_count(0)
    row.get_by_role("button", name="재호출", exact=True).click()
    expect(row).to_contain_text("호출 2회")
    row.get_by_role("button", name="재호출", exact=True).click()
    expect(row).to_contain_text("호출 3회")
    row.get_by_role("button", name="부재", exact=True).click()
    expect(row.locator(".badge").first).to_have_text("부재")
    # Absent: off the display's calls, and the doctor may call them again.
    expect(tv.locator("#display-calling li", has_text=number)).to_have_count(0, timeout=2_000)
    row.get_by_role("button", name="호출", exact=True).click()
    expect(row).to_contain_text("호출 1회")

    # A step overtaken by another: the visit is begun elsewhere (through the API) while this
    # page still offers 진료 시작. Focus in the list holds the page's refresh back.
    begin = row.get_by_role("button", name="진료 시작", exact=True)
    begin.focus()
    diagnosis = api.until(f"/diagnoses?receptionId={visit['id']}", "doctor", lambda body: body["items"])["items"][0]
    status, started = api.call("POST", f"/diagnoses/{diagnosis['id']}/start", "doctor", {"room": room})
    assert status == 200, started
    begin.click()
    expect(doctor.locator("[role=alert]").first).to_contain_text(f"이미 doctor 님이 {room}에서 진료 중인 환자입니다")

    # The doctor's own undo of that start, then 진료 시작 from the screen opens the visit.
    status, undone = api.call("POST", f"/diagnoses/{diagnosis['id']}/undo", "doctor")
    assert status == 200 and undone["queueState"] == "CALLED", undone
    doctor.goto("/doctor")
    doctor.locator("#worklist-rows tr", has_text=name).get_by_role("button", name="진료 시작", exact=True).click()
    doctor.wait_for_url(f"**/doctor/diagnoses/{diagnosis['id']}**")
    expect(doctor.locator(".notice, [role=status]").first).to_contain_text("진료를 시작했습니다")


def test_the_examiner_calls_to_an_exam_room_and_the_display_follows(new_context, base_url):
    """검사실 호출: the examiner chooses an exam room (remembered), sees the exams it performs with
    their numbers, calls (the display shows the exam room within a second, masked), begins and
    takes the start back."""
    api = Api.sign_in(base_url, PASSWORD, roles=("desk", "doctor", "examiner"))
    department, room = "가정의학과", "영상검사실"
    name = "최" + chr(0xAC00 + uuid.uuid4().int % 11172) + "희"
    status, visit = api.call("POST", "/receptions", "desk", {"patientName": name, "department": department})
    assert status == 201, visit
    number = visit["queueNumber"]
    masked = name[0] + "*" + name[-1]
    diagnosis = api.until(f"/diagnoses?receptionId={visit['id']}", "doctor", lambda body: body["items"])["items"][0]
    status, prescribed = api.call(
        "POST", f"/diagnoses/{diagnosis['id']}/prescriptions", "doctor",
        {"examinations": [{"code": "US", "name": "복부 초음파"}]})
    assert status == 200, prescribed

    tv = new_context("display").new_page()
    tv.goto("/display/" + urllib.parse.quote(department))

    examiner = new_context("examiner").new_page()
    examiner.goto("/examiner")
    expect(examiner.locator("#room-now")).to_contain_text("검사실을 고르면")
    examiner.get_by_label("검사실", exact=True).select_option(room)
    examiner.get_by_role("button", name="선택", exact=True).click()
    expect(examiner.locator("#room-now")).to_contain_text(room)
    examiner.goto("/examiner")
    expect(examiner.locator("#room-now")).to_contain_text(room)

    card = examiner.locator("section.exam", has_text=name)
    expect(card.locator(".queue-number")).to_have_text(number)
    expect(card.locator(".place")).to_have_text("대기")
    card.get_by_role("button", name="호출", exact=True).click()
    clicked = time.monotonic()
    expect(examiner.locator(".notice, [role=status]").first).to_contain_text("호출했습니다")
    line = tv.locator("#display-calling li", has_text=number)
    expect(line).to_have_text(f"{number} {masked} → {room}", timeout=1_500)
    print(f"display: the examiner's call showed {time.monotonic() - clicked:.3f} s after the click")
    assert name not in tv.content()

    card = examiner.locator("section.exam", has_text=name)
    expect(card.locator(".place")).to_contain_text(f"호출 1회 · {room}")
    card.get_by_role("button", name="검사 시작", exact=True).click()
    expect(examiner.locator(".notice, [role=status]").first).to_contain_text("검사를 시작했습니다")
    card = examiner.locator("section.exam", has_text=name)
    expect(card.locator(".place")).to_contain_text(f"검사 중 · {room}")
    expect(tv.locator("#display-calling li", has_text=number)).to_have_count(0, timeout=2_000)
    card.get_by_role("button", name="되돌리기 (검사 시작)", exact=True).click()
    expect(examiner.locator(".notice, [role=status]").first).to_contain_text("되돌렸습니다")
    expect(examiner.locator("section.exam", has_text=name).locator(".place")).to_contain_text("호출 1회")
