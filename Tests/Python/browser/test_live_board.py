"""The desk's board by push, in a real browser: a visit registered elsewhere appears within a
second, and the page does not ask for the board again and again (no request every 2 s in its
network log: one live connection)."""

import time
import uuid

from playwright.sync_api import expect

from conftest import PASSWORD
from hospital_api import Api


def test_the_board_changes_by_push_without_polling(desk_context, base_url):
    api = Api.sign_in(base_url, PASSWORD, roles=("desk",))
    page = desk_context.new_page()
    requests = []
    page.on("request", lambda request: requests.append((time.monotonic(), request.url)))
    page.goto("/desk")
    # The page says when its live connection is open.
    expect(page.locator("#board-rows")).to_have_attribute("data-live-state", "open")

    name = f"푸시{uuid.uuid4().hex[:6]}"
    status, visit = api.call("POST", "/receptions", "desk", {"patientName": name, "department": "내과"})
    assert status == 201, visit
    registered = time.monotonic()
    row = page.locator(f"#board-rows tr[data-reception='{visit['id']}']")
    expect(row).to_be_visible(timeout=1_500)
    print(f"board: the new visit showed {time.monotonic() - registered:.3f} s after its registration answered")
    expect(row).to_contain_text(visit["queueNumber"])

    # A cancellation elsewhere shows too.
    status, _ = api.call("POST", f"/receptions/{visit['id']}/cancel", "desk", {"reason": "귀가"})
    assert status == 200
    expect(row.locator(".badge").first).to_have_text("접수취소", timeout=1_500)

    # Pushed, not polled: over 2.5 s the page asks the board nothing (the waits panel asks every
    # 30 s). An observation window, not a wait for anything.
    since = time.monotonic()
    page.wait_for_timeout(2_500)
    asked = [url for at, url in requests if at > since and "/desk/board" in url]
    assert asked == [], f"the page asked for the board again: {asked}"
    streams = [url for _, url in requests if "/desk/board/events" in url]
    assert len(streams) == 1, streams


def test_the_examiners_list_says_it_changed_by_push(examiner_context, base_url):
    """The examiner's page is not redrawn under someone typing a result: it says the list changed
    (with a link to reload) as soon as an exam is ordered, by push rather than by asking."""
    api = Api.sign_in(base_url, PASSWORD, roles=("desk", "doctor", "examiner"))
    page = examiner_context.new_page()
    requests = []
    page.on("request", lambda request: requests.append((time.monotonic(), request.url)))
    page.goto("/examiner")
    notice = page.locator("#exam-changes")
    expect(notice).to_have_attribute("data-live-state", "open")
    expect(notice.get_by_role("link")).to_have_count(0)

    diagnosis = api.diagnosis_of(api.register(f"검사푸시{uuid.uuid4().hex[:6]}"))
    status, _ = api.call("POST", f"/diagnoses/{diagnosis}/prescriptions", "doctor",
                         {"examinations": [{"code": "CBC", "name": "혈액검사"}]})
    assert status == 200
    ordered = time.monotonic()
    expect(notice.get_by_role("link", name="검사 목록이 바뀌었습니다 · 새로고침")).to_be_visible(timeout=3_000)
    print(f"examiner: the notice showed {time.monotonic() - ordered:.3f} s after the order answered")

    # Pushed, not polled: the page never asked /examiner/changes (its old 5-s question).
    assert [url for _, url in requests if "/examiner/changes?" in url] == []
    assert len([url for _, url in requests if "/examiner/changes/events" in url]) == 1


def test_the_desk_changes_a_priority_from_the_board(desk_context, base_url):
    api = Api.sign_in(base_url, PASSWORD, roles=("desk",))
    name = f"우선{uuid.uuid4().hex[:6]}"
    status, visit = api.call("POST", "/receptions", "desk", {"patientName": name, "department": "내과"})
    assert status == 201, visit
    page = desk_context.new_page()
    page.goto("/desk")
    row = page.locator(f"#board-rows tr[data-reception='{visit['id']}']")
    row.get_by_role("link", name="우선순위").click()
    page.wait_for_url(f"**/desk/receptions/{visit['id']}/priority")
    expect(page.get_by_label("일반")).to_be_checked()
    page.get_by_label("응급").check()
    page.get_by_role("button", name="우선순위 변경").click()
    page.wait_for_url("**/desk?notice=prioritized")
    expect(page.get_by_role("status")).to_have_text("우선순위를 바꿨습니다.")
    expect(page.locator(f"#board-rows tr[data-reception='{visit['id']}'] .priority-EMERGENCY")).to_have_text("응급", timeout=5_000)
    status, after = api.call("GET", f"/receptions/{visit['id']}", "desk")
    assert after["priority"] == "EMERGENCY"
