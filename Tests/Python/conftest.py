"""The Python suites, by kind: browser/ (a real `hospital serve` driven through Debian's chromium by
Playwright), process/ (its API and its process without a browser), deployment/ (the manifests, the
image, a rolling restart) and pipelines/. The helper modules beside this file (hospital_api,
otlp_receiver, waiting) are importable from every folder: pytest puts this file's directory on
sys.path. Playwright is imported by the fixtures that drive the browser only, so that the other
suites run without it."""

import os
import pathlib
import shutil
import tempfile
import uuid

import pytest

from hospital_api import add_accounts, serve

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = pathlib.Path(os.environ.get("SCREENSHOT_DIR", ROOT / ".build" / "screenshots"))


PASSWORD = "browser test password"
ROLES = ("desk", "doctor", "examiner", "admin", "display")
HOME = {"desk": "/desk", "doctor": "/doctor", "examiner": "/examiner", "display": "/display"}


@pytest.fixture(scope="session")
def base_url():
    """The gateway of a whole system on a fresh data directory; every port chosen by the OS.
    One account per role, made as an operator would (`hospital users add`, password on stdin)."""
    data = tempfile.mkdtemp(prefix="hospital-browser-")
    add_accounts(data, PASSWORD)
    process, urls = serve(data)
    yield urls["gateway"]
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import expect, sync_playwright

    # A screen that follows another service's event refreshes every 2 s, after that service has
    # taken the event: on two loaded cores Playwright's default 5 s for an assertion is too short.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True
        )
        yield browser
        browser.close()


def sign_in(page, role: str, password: str = PASSWORD):
    """Signs in through the sign-in screen, as a person would."""
    page.goto("/login")
    page.get_by_label("아이디").fill(role)
    page.get_by_label("비밀번호").fill(password)
    page.get_by_role("button", name="로그인").click()


@pytest.fixture
def new_context(browser, base_url):
    """A fresh browser (its own cookies): signed in as `role` if one is given."""
    contexts = []

    def make(role=None):
        context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        contexts.append(context)
        if role:
            page = context.new_page()
            sign_in(page, role)
            page.wait_for_url(f"**{HOME[role]}")
            page.close()
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def desk_context(new_context):
    return new_context("desk")


@pytest.fixture
def doctor_context(new_context):
    return new_context("doctor")


@pytest.fixture
def examiner_context(new_context):
    return new_context("examiner")


@pytest.fixture
def page(desk_context):
    """A desk's page, signed in."""
    return desk_context.new_page()


@pytest.fixture
def patient():
    """A name no other test uses, so tests can share one system."""
    return f"환자{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def screenshots():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
