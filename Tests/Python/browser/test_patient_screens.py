"""The desk's patient registry, through its screens only: search first, 신환 등록 with the
possible duplicate said in words, a returning patient's visit without retyping anything, a
correction, and the doctor's screen showing 만 나이, sex and the previous visits."""

import uuid

from playwright.sync_api import Page, expect


def search(page: Page, **fields):
    page.goto("/desk")
    form = page.locator("form[action='/desk/patients/search']")
    labels = {"name": "이름", "birthDate": "생년월일", "chartNumber": "환자번호", "phone": "연락처"}
    for field, value in fields.items():
        form.get_by_label(labels[field]).fill(value)
    form.get_by_role("button", name="검색").click()


def new_name() -> str:
    return "신환" + uuid.uuid4().hex[:6]


def register_new_patient(page: Page, name: str, birth: str = "1961-04-05", sex: str = "여") -> str:
    """From a search that found nobody to the new patient's page; returns the chart number."""
    search(page, name=name, birthDate=birth)
    expect(page.locator("#patients")).to_contain_text("찾는 환자가 없습니다")
    form = page.locator("form[action='/desk/patients']")
    expect(form.get_by_label("이름")).to_have_value(name)  # what was searched for is not typed again
    expect(form.get_by_label("생년월일")).to_have_value(birth)
    form.get_by_label("성별").select_option(label=sex)
    form.get_by_label("연락처").fill("010-3333-4444")
    form.get_by_role("button", name="신환 등록").click()
    expect(page.get_by_role("status")).to_have_text("신환으로 등록했습니다.")
    chart = page.locator("#patient-chart-number").inner_text()
    assert len(chart) == 8 and chart.isdigit(), chart
    return chart


def test_a_returning_patient_is_found_and_registered_without_retyping(desk_context, doctor_context):
    desk = desk_context.new_page()
    name = new_name()
    chart = register_new_patient(desk, name)

    # The first visit, from the patient's page: only the department is chosen.
    desk.get_by_label("진료과").select_option("내과")
    desk.get_by_role("button", name="접수", exact=True).click()
    expect(desk.get_by_role("status")).to_have_text("접수되었습니다.")
    expect(desk.locator("#patient-visits tr[data-reception]")).to_have_count(1)

    # The desk's board shows the chart number beside the name.
    desk.goto("/desk")
    expect(desk.locator("#board-rows tr", has_text=name)).to_contain_text(chart)

    # The doctor completes it; the worklist shows the chart number, age and sex too.
    doctor = doctor_context.new_page()
    doctor.goto("/doctor")
    link = doctor.get_by_role("link", name=name)
    expect(link).to_be_visible()
    expect(doctor.locator("tr", has=link)).to_contain_text(chart)
    link.click()
    expect(doctor.locator("#patient-sex-age")).to_contain_text("여")
    expect(doctor.locator("#previous-visits")).to_contain_text("이전 진료 기록이 없습니다")
    doctor.get_by_label("소견").fill("경과 관찰")
    doctor.get_by_role("button", name="진료 완료").click()
    expect(doctor.get_by_role("status")).to_have_text("진료를 완료했습니다.")

    # A week later: the desk finds them by chart number, opens them, registers with one choice.
    search(desk, chartNumber=chart)
    row = desk.locator("#patients tr", has_text=chart)
    expect(row).to_contain_text(name)
    row.get_by_role("link").click()
    expect(desk.locator("#patient-chart-number")).to_have_text(chart)
    desk.get_by_label("진료과").select_option("내과")
    desk.get_by_role("button", name="접수", exact=True).click()
    expect(desk.get_by_role("status")).to_have_text("접수되었습니다.")
    expect(desk.locator("#patient-visits tr[data-reception]")).to_have_count(2)

    # The doctor sees the first visit among the previous ones.
    doctor.goto("/doctor")
    link = doctor.get_by_role("link", name=name)
    expect(link).to_be_visible()
    link.click()
    expect(doctor.locator("#previous-visits")).to_contain_text("경과 관찰")


def test_a_possible_duplicate_is_said_in_words_and_can_be_confirmed(page):
    name = new_name()
    register_new_patient(page, name, birth="1970-02-03")
    # The same name and birth date again, as a new patient.
    page.goto("/desk")
    search(page, name=name + "x")  # nobody: the new-patient form
    form = page.locator("form[action='/desk/patients']")
    form.get_by_label("이름").fill(name)
    form.get_by_label("생년월일").fill("1970-02-03")
    form.get_by_label("성별").select_option(label="남")
    form.get_by_role("button", name="신환 등록").click()
    warning = page.locator("#duplicates")
    expect(warning).to_contain_text("이름과 생년월일이 같은 환자가 이미 등록되어 있습니다")
    expect(warning.get_by_role("link")).to_have_count(1)
    assert "{" not in page.locator("main").inner_text()
    # Someone else after all: ticked and registered, by keyboard alone.
    page.get_by_label("위 환자와 다른 사람임을 확인했습니다.").focus()
    page.keyboard.press("Space")
    page.locator("form[action='/desk/patients']").get_by_role("button", name="신환 등록").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("신환으로 등록했습니다.")
    search(page, name=name)
    expect(page.locator("#patients tr[data-patient]")).to_have_count(2)


def test_a_correction_keeps_the_chart_number_and_refuses_a_stale_page(page, desk_context):
    name = new_name()
    chart = register_new_patient(page, name)
    stale = desk_context.new_page()
    stale.goto(page.url)
    form = page.locator("form:has(button:has-text('수정 저장'))")
    form.get_by_label("이름").fill(name + "정")
    form.get_by_role("button", name="수정 저장").click()
    expect(page.get_by_role("status")).to_have_text("환자 정보를 수정했습니다.")
    expect(page.locator("#patient-facts")).to_contain_text(name + "정")
    expect(page.locator("#patient-chart-number")).to_have_text(chart)
    # The other desk's page still shows the old version: its correction is refused in words.
    stale.locator("form:has(button:has-text('수정 저장'))").get_by_label("연락처").fill("010-0000-1111")
    stale.get_by_role("button", name="수정 저장").click()
    expect(stale.get_by_role("alert")).to_contain_text("다른 사람이 먼저 환자 정보를 수정했습니다")
    expect(stale.locator("#patient-facts")).to_contain_text(name + "정")
