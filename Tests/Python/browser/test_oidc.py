"""Signing in through an external OpenID Connect provider: a real one (PyPI `oidc-provider-mock`,
the authorization code flow with RS256 ID tokens and a JWKS) running on loopback."""

import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

from hospital_api import serve
from waiting import wait_until

CLIENT = "hospital"  # this system's client at the provider; the API's audience too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.status == 200


@pytest.fixture(scope="module")
def provider():
    """The identity provider, with a doctor (roles claim `["doctor"]`) and a user of no role."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "oidc_provider_mock", "--port", str(port),
            "--user-claims", json.dumps({"sub": "kim-1234", "preferred_username": "dr.kim", "roles": ["doctor"]}),
            "--user-claims", json.dumps({"sub": "visitor-9", "preferred_username": "visitor", "roles": ["patient"]}),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        # Until it listens and answers: a refused or reset connection, or an error status.
        wait_until(lambda: _answers(issuer + "/.well-known/openid-configuration"), 30, f"the provider at {issuer}",
                   every=0.1, ignoring=(urllib.error.URLError, ConnectionError))
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def system(provider):
    """A whole system that signs users in through the provider (no local accounts). Opaque
    access tokens are checked at the provider's userinfo endpoint: this provider issues them."""
    data = tempfile.mkdtemp(prefix="hospital-oidc-")
    process, urls = serve(
        data, "--oidc-issuer", provider, "--oidc-client-id", CLIENT, "--oidc-roles-claim", "roles",
        env={"HOSPITAL_OIDC_CLIENT_SECRET": "a client secret", "HOSPITAL_OIDC_OPAQUE_TOKENS": "userinfo"},
    )
    yield urls
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _tokens(issuer: str, client: str, sub: str) -> dict:
    """The authorization code flow as a program runs it: consent for `sub`, then the code for
    tokens at the token endpoint (client_secret_basic)."""
    redirect = "http://127.0.0.1:1/callback"
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client, "redirect_uri": redirect, "scope": "openid profile",
        "state": "s" * 20, "nonce": "n" * 20,
    })
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(urllib.request.Request(
            f"{issuer}/oauth2/authorize?{query}", data=urllib.parse.urlencode({"sub": sub}).encode(), method="POST"))
        raise AssertionError("the provider did not redirect with a code")
    except urllib.error.HTTPError as redirect_answer:
        location = redirect_answer.headers["Location"]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
    basic = base64.b64encode(f"{client}:secret".encode()).decode()
    request = urllib.request.Request(
        f"{issuer}/oauth2/token",
        data=urllib.parse.urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}).encode(),
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def _status(url: str, token: str | None = None, method: str = "GET", body: dict | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method)) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_sign_in_through_the_provider_reaches_the_doctors_screen(browser, system, screenshots):
    context = browser.new_context(base_url=system["gateway"], viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/doctor")
    page.wait_for_url("**/login?next=/doctor")
    expect(page.get_by_label("비밀번호")).to_have_count(0)  # no local passwords
    page.get_by_role("link", name="병원 통합 계정으로 로그인").click()
    # The provider's own consent page, on its own port.
    page.wait_for_url("**/oauth2/authorize?**")
    authorize = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert authorize["code_challenge_method"] == ["S256"] and len(authorize["code_challenge"][0]) == 43
    assert authorize["client_id"] == [CLIENT] and authorize["nonce"][0] and authorize["state"][0]
    page.get_by_role("button", name="kim-1234").click()
    page.wait_for_url("**/doctor")
    expect(page.get_by_role("heading", level=1)).to_have_text("진료 대기 목록")
    expect(page.locator("header .user")).to_contain_text("dr.kim")
    (screenshots / "oidc").mkdir(exist_ok=True)
    page.screenshot(path=str(screenshots / "oidc" / "doctor-ko.png"))
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["hospital_session"]["sameSite"] == "Strict" and "hospital_oidc" not in cookies
    # The doctor's screens work: their worklist is read through the API as dr.kim.
    assert page.request.get("/doctor/worklist").status == 200
    assert page.request.get("/desk", max_redirects=0).status == 403
    context.close()


def test_a_user_without_a_hospital_role_is_not_signed_in(browser, system):
    context = browser.new_context(base_url=system["gateway"])
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_role("link", name="병원 통합 계정으로 로그인").click()
    page.get_by_role("button", name="visitor-9").click()
    page.wait_for_url("**/login/oidc/callback?**")
    expect(page.get_by_role("alert")).to_contain_text("역할이 없습니다")
    assert "hospital_session" not in {c["name"] for c in context.cookies()}
    context.close()


def test_a_callback_without_this_browsers_sign_in_is_refused(browser, system, provider):
    # A code obtained elsewhere (a login CSRF: an attacker's code pushed into the victim's
    # browser) is refused: this browser started no sign-in, so there is no state to match.
    context = browser.new_context(base_url=system["gateway"])
    page = context.new_page()
    page.goto("/login/oidc/callback?code=stolen&state=" + "x" * 43)
    expect(page.get_by_role("alert")).to_contain_text("통합 로그인을 완료하지 못했습니다")
    assert "hospital_session" not in {c["name"] for c in context.cookies()}
    context.close()


def test_the_providers_tokens_call_the_api_and_a_token_for_another_audience_is_refused(system, provider):
    gateway, diagnosis = system["gateway"], system["diagnosis"]
    ours = _tokens(provider, CLIENT, "kim-1234")
    # The access token (opaque at this provider: checked at its userinfo endpoint), on the
    # gateway and on the service's own port.
    for base in (gateway, diagnosis):
        assert _status(f"{base}/diagnoses", ours["access_token"]) == 200
        assert _status(f"{base}/receptions", ours["access_token"]) in (403, 404)  # a doctor's role, no more
    # A signed token for this audience (the ID token: RS256, aud = this client), checked against
    # the provider's JWKS.
    assert _status(f"{gateway}/diagnoses", ours["id_token"]) == 200
    assert _status(f"{diagnosis}/diagnoses", ours["id_token"]) == 200

    theirs = _tokens(provider, "another-app", "kim-1234")
    for base in (gateway, diagnosis):
        assert _status(f"{base}/diagnoses", theirs["id_token"]) == 401  # another audience
        header, payload, signature = ours["id_token"].split(".")
        flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
        assert _status(f"{base}/diagnoses", f"{header}.{payload}.{flipped}") == 401
        assert _status(f"{base}/diagnoses", "not-a-token-the-provider-issued") == 401
    # A user of no hospital role: the provider knows them, the hospital does not let them in.
    nobody = _tokens(provider, CLIENT, "visitor-9")
    assert _status(f"{gateway}/diagnoses", nobody["access_token"]) == 401
    assert _status(f"{gateway}/diagnoses", nobody["id_token"]) == 401
    # Local accounts are off.
    assert _status(f"{gateway}/auth/token", method="POST", body={"username": "doctor", "password": "x" * 12}) == 401


def test_without_userinfo_an_opaque_token_is_refused(provider):
    # The default: an opaque token's audience cannot be checked, so it is not accepted at all.
    data = tempfile.mkdtemp(prefix="hospital-oidc-")
    process, urls = serve(data, "--oidc-issuer", provider, "--oidc-client-id", CLIENT)
    try:
        ours = _tokens(provider, CLIENT, "kim-1234")
        assert _status(f"{urls['gateway']}/diagnoses", ours["access_token"]) == 401
        assert _status(f"{urls['gateway']}/diagnoses", ours["id_token"]) == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
