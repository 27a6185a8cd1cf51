"""The desk, the doctor and the examiner, through their screens only."""

import re

from playwright.sync_api import Page, expect

from waiting import wait_until


def register(page: Page, name: str, department: str = "내과", symptom: str = "기침"):
    page.goto("/desk")
    page.get_by_label("환자명").fill(name)
    page.get_by_label("진료과").select_option(department)
    page.get_by_label("증상").fill(symptom)
    page.get_by_role("button", name="접수", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("접수되었습니다.")


def board_row(page: Page, name: str):
    return page.locator("#board-rows tr", has_text=name)


def open_visit(page: Page, name: str):
    page.goto("/doctor")
    link = page.get_by_role("link", name=name)
    expect(link).to_be_visible()  # the worklist refreshes itself until the visit arrives
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def registered_and_prescribed(desk_context, doctor_context, patient: str, exam: str) -> Page:
    """A visit registered at the desk and one exam prescribed on the doctor's screen; the
    doctor's page, on the visit."""
    register(desk_context.new_page(), patient)
    doctor = doctor_context.new_page()
    open_visit(doctor, patient)
    doctor.get_by_label(exam).check()
    doctor.get_by_role("button", name="검사 처방").click()
    expect(doctor.get_by_role("status")).to_have_text("검사를 처방했습니다.")
    return doctor


def examiner_worklist(page: Page, name: str, count: int, seconds: float = 20):
    """The examiner's worklist (it does not refresh itself) opened again until it lists `count`
    exams of `name`: the examination service makes and cancels them as it takes the doctor's
    events, after the doctor's screen has answered."""
    def listed():
        page.goto("/examiner")
        exams = page.locator("section.exam", has_text=name)
        return exams if exams.count() == count else None

    return wait_until(listed, seconds, f"the examiner's worklist listing {count} exams of {name}", every=0.2)


def mark_page(page: Page):
    """A marker that a reload would wipe: proves later updates arrived without one."""
    page.evaluate("window.__stillHere = true")


def assert_not_reloaded(page: Page):
    assert page.evaluate("window.__stillHere === true"), "the page was reloaded"


def test_a_visit_through_all_three_screens(desk_context, doctor_context, examiner_context, patient):
    desk = desk_context.new_page()
    register(desk, patient)
    row = board_row(desk, patient)
    expect(row.locator(".badge")).to_have_text("접수완료")
    mark_page(desk)

    doctor = doctor_context.new_page()
    open_visit(doctor, patient)
    expect(doctor.get_by_text("기침")).to_be_visible()
    doctor.get_by_label("일반혈액검사").check()
    doctor.get_by_label("흉부 X선").check()
    doctor.get_by_role("button", name="검사 처방").click()
    expect(doctor.get_by_role("status")).to_have_text("검사를 처방했습니다.")
    expect(doctor.locator("#orders .order")).to_have_count(2)
    mark_page(doctor)

    # The desk's board follows without a reload.
    expect(row.locator(".badge")).to_have_text("검사처방")
    assert_not_reloaded(desk)

    examiner = examiner_context.new_page()
    examiner_worklist(examiner, patient, 2)
    for result in ("백혈구 정상", "폐 음영 없음"):
        exam = examiner.locator("section.exam", has_text=patient).first
        exam.get_by_label("검사 결과").fill(result)
        exam.get_by_role("button", name="검사 시행").click()
        expect(examiner.get_by_role("status")).to_have_text("검사 결과를 저장했습니다.")
    expect(examiner.locator("section.exam", has_text=patient)).to_have_count(0)

    # The doctor sees the results arrive, without a reload.
    expect(doctor.locator("#diagnosis-status")).to_have_text("결과 확인")
    expect(doctor.locator("#orders")).to_contain_text("백혈구 정상")
    expect(doctor.locator("#orders")).to_contain_text("폐 음영 없음")
    assert_not_reloaded(doctor)

    doctor.get_by_label("소견").fill("경과 관찰 후 귀가")
    doctor.get_by_role("button", name="진료 완료").click()
    expect(doctor.get_by_role("status")).to_have_text("진료를 완료했습니다.")

    expect(row.locator(".badge")).to_have_text("진료완료")
    assert_not_reloaded(desk)


def test_rejecting_cancels_the_pending_exam_and_the_visit(desk_context, doctor_context, examiner_context, patient):
    desk = desk_context.new_page()
    register(desk, patient)
    mark_page(desk)
    doctor = doctor_context.new_page()
    open_visit(doctor, patient)
    doctor.get_by_label("자기공명영상").check()
    doctor.get_by_role("button", name="검사 처방").click()
    expect(doctor.get_by_role("status")).to_have_text("검사를 처방했습니다.")
    examiner = examiner_context.new_page()
    examiner_worklist(examiner, patient, 1)

    doctor.get_by_label("사유").fill("상급 병원 전원")
    doctor.get_by_role("button", name="진료 거부").click()
    expect(doctor.get_by_role("status")).to_have_text("진료를 거부했습니다.")

    expect(board_row(desk, patient).locator(".badge")).to_have_text("진료거부")
    assert_not_reloaded(desk)
    # The exam was canceled by compensation: it leaves the examiner's worklist.
    examiner_worklist(examiner, patient, 0)


def test_the_examiners_worklist_says_when_the_exams_waiting_change(
        desk_context, doctor_context, examiner_context, patient):
    examiner = examiner_context.new_page()
    examiner.goto("/examiner")
    mark_page(examiner)
    notice = examiner.get_by_role("link", name="검사 목록이 바뀌었습니다 · 새로고침")
    expect(notice).to_have_count(0)

    registered_and_prescribed(desk_context, doctor_context, patient, "심전도")

    # The page is not redrawn under the examiner: it says the list changed, in a live region.
    expect(notice).to_be_visible()
    expect(examiner.locator("section.exam", has_text=patient)).to_have_count(0)
    assert_not_reloaded(examiner)
    notice.click()
    expect(examiner.locator("section.exam", has_text=patient)).to_have_count(1)
    # The reloaded page's region holds a live connection (the notice is pushed) and shows none:
    # nothing changed since.
    region = examiner.locator("#exam-changes")
    expect(region).to_have_attribute("data-live-state", "open")
    expect(notice).to_have_count(0)
    # The fallback for a browser without EventSource (or refused one) still asks with the
    # answer's ETag: 200 without a notice, then 304.
    listed = region.get_attribute("data-refresh")
    first = examiner.request.get(listed)
    assert first.status == 200 and "검사 목록" not in first.text()
    again = examiner.request.get(listed, headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304


def test_the_desk_cancels_a_visit(desk_context, doctor_context, patient):
    desk = desk_context.new_page()
    register(desk, patient)
    doctor = doctor_context.new_page()
    doctor.goto("/doctor")
    expect(doctor.get_by_role("link", name=patient)).to_be_visible()
    mark_page(doctor)

    board_row(desk, patient).get_by_role("link", name="접수 취소").click()
    desk.get_by_role("button", name="접수 취소").click()
    expect(desk.get_by_text("취소 사유 항목을 입력해 주세요.")).to_be_visible()  # a reason is required
    desk.get_by_label("취소 사유").fill("환자 요청")
    desk.get_by_role("button", name="접수 취소").click()
    expect(desk.get_by_role("status")).to_have_text("접수가 취소되었습니다.")
    expect(board_row(desk, patient).locator(".badge")).to_have_text("접수취소")

    # The doctor's worklist drops it by itself.
    expect(doctor.get_by_role("link", name=patient)).to_have_count(0)
    assert_not_reloaded(doctor)


def test_a_double_click_registers_one_visit(page, patient):
    page.goto("/desk")
    page.get_by_label("환자명").fill(patient)
    page.get_by_role("button", name="접수", exact=True).dblclick()
    expect(page.get_by_role("status")).to_have_text("접수되었습니다.")
    expect(board_row(page, patient)).to_have_count(1)


def test_the_same_form_sent_twice_registers_one_visit(page, patient):
    # Without the page's script: the form's own Idempotency-Key makes the second post harmless.
    page.goto("/desk")
    key = page.locator("input[name=idempotencyKey]").input_value()
    csrf = page.locator("input[name=csrf]").first.input_value()
    for _ in range(2):
        response = page.request.post(
            "/desk/receptions",
            form={"csrf": csrf, "idempotencyKey": key, "patientName": patient},
            max_redirects=0,
        )
        assert response.status == 303
    page.goto("/desk")
    expect(board_row(page, patient)).to_have_count(1)


def test_validation_speaks_the_users_language(page):
    page.goto("/desk")
    page.get_by_role("button", name="접수", exact=True).click()
    expect(page.locator("#patientName-error")).to_have_text("환자명 항목을 입력해 주세요.")
    expect(page.get_by_label("환자명")).to_be_focused()

    # A rule only the server knows: the answer is a sentence, never JSON.
    page.get_by_label("환자명").fill("미래인")
    page.locator("form[action='/desk/receptions']").get_by_label("생년월일").fill("2999-01-01")
    page.get_by_role("button", name="접수", exact=True).click()
    expect(page.locator("#birthDate-error")).to_have_text("생년월일 항목은 미래 날짜일 수 없습니다.")
    expect(page.get_by_role("alert")).to_have_text("입력한 내용을 확인해 주세요.")
    assert "{" not in page.locator("main").inner_text()
    expect(page.get_by_label("환자명")).to_have_value("미래인")  # what was typed is kept


def test_english_is_one_click_away_and_remembered(doctor_context):
    page = doctor_context.new_page()
    page.goto("/doctor")
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Patients waiting")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto("/")  # home sends the doctor to their screen, still in English
    expect(page.get_by_role("heading", level=1)).to_have_text("Patients waiting")
    page.get_by_role("link", name="한국어").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("진료 대기 목록")


def test_a_stale_page_gets_a_clear_message_and_the_fresh_state(desk_context, doctor_context, patient):
    desk = desk_context.new_page()
    register(desk, patient)
    doctor = doctor_context.new_page()
    open_visit(doctor, patient)

    # Meanwhile the desk cancels the visit; the doctor's page still offers 진료 완료.
    board_row(desk, patient).get_by_role("link", name="접수 취소").click()
    desk.get_by_label("취소 사유").fill("환자 귀가")
    desk.get_by_role("button", name="접수 취소").click()
    expect(board_row(desk, patient).locator(".badge")).to_have_text("접수취소")
    # The doctor's service has taken the cancellation too once the visit leaves the worklist
    # (the board heard of it on its own: either may come first).
    worklist = doctor_context.new_page()
    worklist.goto("/doctor")
    expect(worklist.get_by_role("link", name=patient)).to_have_count(0)

    doctor.get_by_role("button", name="진료 완료").click()
    expect(doctor.get_by_role("alert")).to_contain_text("이미 상태가 바뀌어 처리할 수 없습니다")
    expect(doctor.get_by_role("alert")).to_contain_text("접수취소")
    expect(doctor.get_by_text("이 진료는 종료되었습니다.")).to_be_visible()
    expect(doctor.get_by_role("button", name="진료 완료")).to_have_count(0)


def test_a_stale_examiner_page_names_the_exams_state(desk_context, doctor_context, examiner_context, patient):
    doctor = registered_and_prescribed(desk_context, doctor_context, patient, "심전도")
    examiner = examiner_context.new_page()
    exam = examiner_worklist(examiner, patient, 1)
    other = examiner_context.new_page()  # a second examiner's page cancels it first
    other.goto("/examiner")
    theirs = other.locator("section.exam", has_text=patient)
    theirs.get_by_label("취소 사유").fill("장비 점검")
    theirs.get_by_role("button", name="검사 취소").click()
    expect(other.get_by_role("status")).to_have_text("검사를 취소했습니다.")

    exam.get_by_label("검사 결과").fill("정상")
    exam.get_by_role("button", name="검사 시행").click()
    expect(examiner.get_by_role("alert")).to_contain_text("검사 취소")


def test_the_language_toggle_goes_back_only_to_this_site(page):
    for back in ("//evil.example", "/%09/evil.example", "https://evil.example"):
        response = page.request.get(f"/lang/en?back={back}", max_redirects=0)
        assert response.headers["location"] == "/", back


def test_keyboard_and_labels(page):
    page.goto("/desk")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="본문으로 건너뛰기")).to_be_focused()
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => e.labels.length === 0).map(e => e.name)"""
    )
    assert unlabeled == []
    page.keyboard.press("Tab")  # onto the first link of the header, a keyboard focus
    colour = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    assert colour == "rgb(255, 191, 71)", f"the app's own focus ring must show, got {colour}"


def test_screenshots_of_every_screen(new_context, desk_context, doctor_context, examiner_context, patient, screenshots):
    desk = desk_context.new_page()
    register(desk, patient, symptom="두통과 발열")
    doctor = doctor_context.new_page()
    open_visit(doctor, patient)
    doctor.get_by_label("일반혈액검사").check()
    doctor.get_by_role("button", name="검사 처방").click()
    visit_path = re.sub(r"\?.*$", "", doctor.url.replace(doctor.url.split("/doctor")[0], ""))
    desk.goto("/desk")
    cancel_path = board_row(desk, patient).get_by_role("link", name="접수 취소").get_attribute("href")
    signed_out = new_context().new_page()
    examiner = examiner_context.new_page()
    screens = {
        "login": (signed_out, "/login"), "desk": (desk, "/desk"), "desk-cancel": (desk, cancel_path),
        "doctor": (doctor, "/doctor"), "doctor-visit": (doctor, visit_path), "examiner": (examiner, "/examiner"),
    }
    for language, toggle in (("ko", None), ("en", "English")):
        if toggle:
            for page in {id(p): p for p, _ in screens.values()}.values():
                page.goto("/login" if page is signed_out else "/")
                page.get_by_role("link", name=toggle).click()
        for name, (page, path) in screens.items():
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto(path)
            page.screenshot(path=str(screenshots / f"{name}-{language}.png"), full_page=True)
            text = page.locator("main").inner_text()
            assert "nil" not in text and '{"' not in text, f"{path} shows raw values: {text}"
        desk.set_viewport_size({"width": 768, "height": 1024})
        desk.goto("/desk")
        desk.screenshot(path=str(screenshots / f"desk-tablet-{language}.png"), full_page=True)
    assert len(list(screenshots.glob("*.png"))) == 2 * (len(screens) + 1)
