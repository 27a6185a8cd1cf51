"""Result files on the screens: the examiner attaches a PNG, the doctor sees it on the visit."""

import struct
import zlib

from playwright.sync_api import expect

from conftest import PASSWORD
from hospital_api import Api


def png(width: int = 40, height: int = 30) -> bytes:
    """A real PNG (a gradient), so the browser has something to draw."""
    raw = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 6 % 256, y * 8 % 256, 128)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_the_examiner_attaches_a_png_and_the_doctor_sees_it(new_context, base_url, patient, screenshots, tmp_path):
    api = Api.sign_in(base_url, PASSWORD, roles=("desk", "doctor", "examiner"))
    reception = api.register(patient)
    diagnosis = api.diagnosis_of(reception)
    assert api.call("POST", f"/diagnoses/{diagnosis}/prescriptions", "doctor",
                    {"examinations": [{"code": "XR", "name": "흉부 X선"}]})[0] == 200
    api.until(f"/examinations?diagnosisId={diagnosis}", "examiner", lambda b: b["items"])
    image = tmp_path / "흉부-X선.png"
    image.write_bytes(png())

    examiner = new_context("examiner").new_page()
    examiner.goto("/examiner")
    card = examiner.locator("section.exam", has_text=patient)
    expect(card.locator(".files")).to_contain_text("첨부 파일 없음")
    card.locator("input[type=file]").set_input_files(str(image))
    card.get_by_role("button", name="파일 첨부").click()
    examiner.wait_for_url("**/examiner?notice=attached")
    expect(examiner.get_by_role("status")).to_have_text("파일을 첨부했습니다.")
    card = examiner.locator("section.exam", has_text=patient)
    expect(card.locator(".files")).to_contain_text("흉부-X선.png")
    card.get_by_label("검사 결과").fill("이상 소견 없음")
    card.get_by_role("button", name="검사 시행").click()
    examiner.wait_for_url("**/examiner?notice=performed")

    doctor = new_context("doctor").new_page()
    doctor.goto(f"/doctor/diagnoses/{diagnosis}")
    thumbnail = doctor.get_by_role("img", name="흉부-X선.png")
    expect(thumbnail).to_be_visible()
    # Drawn, not a broken image: its bytes came through the screens' route as the doctor.
    doctor.wait_for_function("img => img.complete && img.naturalWidth === 40", arg=thumbnail.element_handle())
    (screenshots / "attachments").mkdir(exist_ok=True)
    doctor.screenshot(path=str(screenshots / "attachments" / "doctor-visit-ko.png"), full_page=True)
    # The desk may not read it, on the screens as on the API.
    src = thumbnail.get_attribute("src")
    desk = new_context("desk").new_page()
    assert desk.request.get(src, max_redirects=0).status == 403

    # The page asks for its orders every two seconds: unchanged, they answer 304 and list no
    # files again, so the audit trail gets no entry per refresh. (The pages are closed first:
    # only this test's requests run.)
    session = doctor.context.request
    examiner.close()
    doctor.close()
    region = f"/doctor/diagnoses/{diagnosis}/orders"
    first = session.get(region)
    tag = first.headers.get("etag")
    assert first.status == 200 and tag and "흉부-X선.png" in first.text()
    listing = "GET /examinations/:id/attachments"
    admin = Api.sign_in(base_url, PASSWORD, roles=("admin", "examiner"))
    trail = f"/admin/audit?receptionId={reception}"
    exam = api.call("GET", f"/examinations?diagnosisId={diagnosis}", "examiner")[1]["items"][0]["id"]

    def count(body, user: str) -> int:
        return sum(e["action"] == listing and e["user"] == user for e in body["items"])

    def doctors_listings() -> int:
        """The doctor's listings in the trail, once every earlier one is written: the examiner
        lists the files twice through the API and the trail (one writer, in order) shows a new
        examiner entry after each; the second is sure to be one asked for after everything
        before."""
        body = admin.call("GET", trail, "admin")[1]
        for _ in range(2):
            known = count(body, "examiner")
            assert admin.call("GET", f"/examinations/{exam}/attachments", "examiner")[0] == 200
            body = admin.until(trail, "admin", lambda b: count(b, "examiner") > known)
        return count(body, "doctor")

    before = doctors_listings()
    assert before >= 1  # the 200 above listed them
    for _ in range(3):
        assert session.get(region, headers={"If-None-Match": tag}).status == 304
    assert doctors_listings() == before


def test_a_file_that_is_not_an_image_is_refused_on_the_screen(new_context, base_url, patient, tmp_path):
    api = Api.sign_in(base_url, PASSWORD, roles=("desk", "doctor", "examiner"))
    reception = api.register(patient)
    diagnosis = api.diagnosis_of(reception)
    api.call("POST", f"/diagnoses/{diagnosis}/prescriptions", "doctor", {"examinations": [{"code": "ECG", "name": "심전도"}]})
    api.until(f"/examinations?diagnosisId={diagnosis}", "examiner", lambda b: b["items"])
    fake = tmp_path / "ecg.png"
    fake.write_bytes(b"#!/bin/sh\necho not an image\n" + bytes(200))
    page = new_context("examiner").new_page()
    page.goto("/examiner")
    card = page.locator("section.exam", has_text=patient)
    card.locator("input[type=file]").set_input_files(str(fake))
    card.get_by_role("button", name="파일 첨부").click()
    page.wait_for_url("**/examiner?error=attachType")
    expect(page.get_by_role("alert").first).to_contain_text("PNG, JPEG, PDF, DICOM 파일만")
