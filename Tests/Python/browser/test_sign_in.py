"""Signing in, roles on the screens, and forms that only this site can post."""

import re

from playwright.sync_api import expect

from conftest import sign_in


def test_each_role_signs_in_to_its_own_screen_and_out(new_context):
    page = new_context().new_page()
    page.goto("/doctor")
    page.wait_for_url("**/login?next=/doctor")  # not signed in: to the sign-in page first
    page.get_by_label("아이디").fill("doctor")
    page.get_by_label("비밀번호").fill("browser test password")
    page.get_by_role("button", name="로그인").click()
    page.wait_for_url("**/doctor")
    expect(page.get_by_role("heading", level=1)).to_have_text("진료 대기 목록")
    expect(page.locator("header .user")).to_contain_text("doctor")

    # Another role's screen is refused, and so is the API behind it.
    assert page.request.get("/desk", max_redirects=0).status == 403
    assert page.request.get("/examiner", max_redirects=0).status == 403

    page.get_by_role("button", name="로그아웃").click()
    page.wait_for_url("**/login?notice=signedOut")
    expect(page.get_by_role("status")).to_have_text("로그아웃했습니다.")
    page.goto("/doctor")
    page.wait_for_url("**/login?next=/doctor")

    for role, screen in (("desk", "/desk"), ("examiner", "/examiner")):
        sign_in(page, role)
        page.wait_for_url(f"**{screen}")
        page.get_by_role("button", name="로그아웃").click()
        page.wait_for_url("**/login?notice=signedOut")


def test_a_wrong_password_is_refused_in_the_users_language(new_context):
    page = new_context().new_page()
    sign_in(page, "desk", password="not the password")
    expect(page.get_by_role("alert")).to_have_text(
        "아이디 또는 비밀번호가 올바르지 않습니다. 여러 번 틀리면 계정이 잠시 잠깁니다."
    )
    expect(page.get_by_label("아이디")).to_have_value("desk")  # the name is kept, the password is not
    expect(page.get_by_label("비밀번호")).to_have_value("")


def test_the_session_cookie_is_http_only_and_strict(desk_context):
    cookies = {c["name"]: c for c in desk_context.cookies()}
    session = cookies["hospital_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "expires" not in session or session["expires"] == -1  # gone with the browser


def test_a_cross_origin_form_post_with_a_valid_session_is_refused(desk_context, base_url, patient):
    page = desk_context.new_page()
    page.goto("/desk")
    # Another site the signed-in user visits: its page posts a registration form to the gateway.
    evil = "http://evil.example/"
    page.route(
        evil,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"""<form method="post" action="{base_url}/desk/receptions">
                     <input name="patientName" value="{patient}"></form>
                     <script>document.forms[0].submit()</script>""",
        ),
    )
    with page.expect_response(f"{base_url}/desk/receptions") as answer:
        page.goto(evil)
    assert answer.value.status == 403

    # Even with the page's own CSRF token, a post from another origin is refused.
    csrf = desk_context.new_page()
    csrf.goto("/desk")
    token = csrf.locator("input[name=csrf]").first.input_value()
    response = csrf.request.post(
        "/desk/receptions",
        form={"csrf": token, "patientName": patient},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert response.status == 403
    # And without the token, from this very site.
    response = csrf.request.post("/desk/receptions", form={"patientName": patient}, max_redirects=0)
    assert response.status == 403

    csrf.goto("/desk")
    expect(csrf.locator("#board-rows tr", has_text=patient)).to_have_count(0)


def test_the_administrator_has_no_patient_screen(new_context):
    page = new_context().new_page()
    sign_in(page, "admin")
    page.wait_for_url(re.compile(r".*/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("관리자")
    expect(page.locator("main")).to_contain_text("관리자 화면은 없습니다")
    assert page.request.get("/desk", max_redirects=0).status == 403
