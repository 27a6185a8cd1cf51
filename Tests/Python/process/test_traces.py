"""Traces over OTLP: one registration, sent with a W3C traceparent, followed across the gateway,
reception and — through the event — diagnosis and the desk's board, as one trace; and an idle
system, asked only by probes and scrapes, sends nothing."""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from hospital_api import Api, add_accounts, binary, serve
from otlp_receiver import Receiver, attribute
from waiting import wait_until

PASSWORD = "traces test password"


def tracing_environment(receiver):
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "HOSPITAL_LOG_FORMAT": "json",
    }


@pytest.fixture
def traced_fresh():
    """A system that has done nothing yet, with the default sampler: the diagnosis service in a
    process of its own (which reads the clinic layout from the gateway, and which the gateway
    calls over HTTP), the rest in another."""
    receiver = Receiver()
    data = tempfile.mkdtemp(prefix="hospital-idle-traces-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        diagnosis_port = s.getsockname()[1]
    process, urls = serve(data, "gateway", "reception", "examination", "patient-management",
                          env={**tracing_environment(receiver),
                               "HOSPITAL_DIAGNOSIS_URL": f"http://127.0.0.1:{diagnosis_port}"})
    diagnosis = subprocess.Popen(
        [binary(), "serve", "diagnosis", "--data-dir", data, "--diagnosis-port", str(diagnosis_port),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, **tracing_environment(receiver), "HOSPITAL_GATEWAY_URL": urls["gateway"]})
    for line in diagnosis.stdout:
        if line.startswith("diagnosis listening on "):
            urls["diagnosis"] = line.split()[-1]
            break
    assert "diagnosis" in urls, "the diagnosis process did not start"
    yield urls, receiver, data
    for running in (diagnosis, process):
        running.terminate()
        running.wait(timeout=30)
    receiver.close()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def traced():
    receiver = Receiver()
    data = tempfile.mkdtemp(prefix="hospital-traces-")
    add_accounts(data, PASSWORD, roles=("desk", "doctor"))
    log = open(os.path.join(data, "stderr.log"), "w")
    process, urls = serve(data, "--log-level", "info", env={
        **tracing_environment(receiver), "OTEL_TRACES_SAMPLER": "always_on"}, stderr=log)
    api = Api.sign_in(urls["gateway"], PASSWORD, roles=("desk", "doctor"))
    api.log = os.path.join(data, "stderr.log")
    yield urls, api, receiver
    process.terminate()
    process.wait(timeout=30)
    log.close()
    receiver.close()
    shutil.rmtree(data, ignore_errors=True)


def test_an_idle_system_exports_nothing(traced_fresh):
    urls, receiver, data = traced_fresh
    # Six seconds of what an idle system sees: its loops (relay, consumers, audit writer,
    # sessions, the clinic layout read from the gateway every 5 s) and, every half second,
    # Kubernetes' probes and Prometheus. Spans are exported every 100 ms here, so any made would
    # have arrived.
    until = time.monotonic() + 6
    while time.monotonic() < until:
        for base in urls.values():
            for path in ("/health/live", "/health/ready", "/metrics", "/clinic/layout", "/auth/revocations"):
                try:
                    urllib.request.urlopen(base + path, timeout=5).read()
                except urllib.error.HTTPError:
                    pass  # the last two are the gateway's alone
        time.sleep(0.5)
    assert [(s.name, attribute(s, "hospital.service")) for _, s in receiver.spans] == []

    # Not because nothing is exported: a request is a trace, and it arrives.
    add_accounts(data, PASSWORD, roles=("desk",))
    api = Api.sign_in(urls["gateway"], PASSWORD, roles=("desk",))
    reception = api.register("한가환자")
    wait_until(lambda: any(s.name.startswith("process ") for _, s in receiver.spans), 20,
               "the registration's spans", every=0.1)
    names = {s.name for _, s in receiver.spans}
    assert "POST /receptions" in names and "transaction" in names
    # Database calls are inside their transaction, not spans of their own; and every trace
    # begins with a request or an event published.
    assert not any(name.startswith("fluent") for name in names), names
    kinds = {s.span_id: s for _, s in receiver.spans}
    for _, span in receiver.spans:
        if span.parent_span_id not in kinds:
            assert span.kind in (span.SPAN_KIND_SERVER, span.SPAN_KIND_PRODUCER, span.SPAN_KIND_CONSUMER), span.name
    assert reception


def test_a_registration_is_one_trace_across_the_services(traced):
    urls, api, receiver = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    reception = api.register("추적환자", headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})
    api.diagnosis_of(reception)
    api.until(f"/patientManagements/{reception}", "desk", lambda b: b["status"] == "RECEIVED")

    def services():
        return {attribute(s, "hospital.service") for _, s in receiver.trace(trace_id)}

    def settled():
        # Spans are exported in batches as they end, a parent often after its children: wait
        # until every service has reported and no span's parent is still to come.
        spans = receiver.trace(trace_id)
        ids = {s.span_id.hex() for _, s in spans} | {caller_span}
        return ({"reception", "diagnosis", "patient-management"} <= services()
                and all(s.parent_span_id.hex() in ids for _, s in spans)
                and any(s.name.startswith("publish ") for _, s in spans))

    wait_until(settled, 20, "every service's spans of the trace, settled", every=0.1)
    spans = receiver.trace(trace_id)
    by_id = {s.span_id.hex(): s for _, s in spans}
    names = {(attribute(s, "hospital.service"), s.name) for _, s in spans}
    assert ("reception", "POST /receptions") in names
    assert ("diagnosis", "process TreatmentReceived") in names
    assert ("patient-management", "process TreatmentReceived") in names
    assert any(s.name == "transaction" for _, s in spans)
    assert any(s.name.startswith("publish ") for _, s in spans)

    # One tree: the request's server span continues the caller's; every other span's parent is
    # in the trace (the consumers' through the envelope's traceparent). Reception runs in the
    # gateway's process here: the gateway's forward and reception's handling are one span (a
    # hop that did not happen makes none), named for reception's route.
    servers = [s for _, s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert [(s.name, attribute(s, "hospital.service"), attribute(s, "hospital.forwarded_by")) for s in servers] == [
        ("POST /receptions", "reception", "gateway")]
    gateway = servers[0]
    assert gateway.parent_span_id.hex() == caller_span
    for _, span in spans:
        if span is not gateway:
            assert span.parent_span_id.hex() in by_id, f"{span.name} hangs outside the trace"
    process = [s for _, s in spans if s.name == "process TreatmentReceived"]
    assert all(s.kind == s.SPAN_KIND_CONSUMER for s in process)
    # Route templates, never ids; and no patient data in any attribute.
    for resource, span in spans:
        assert resource.get("service.name") == "hospital"
        for a in span.attributes:
            assert "추적환자" not in str(a.value)
        route = attribute(span, "http.route")
        assert not route or reception not in route


def test_a_service_in_another_process_is_a_child_of_the_gateways_span(traced_fresh):
    urls, receiver, data = traced_fresh
    # Diagnosis runs in a process of its own here: the gateway calls it over HTTP, and the
    # two server spans are parent and child.
    add_accounts(data, PASSWORD, roles=("doctor",))
    api = Api.sign_in(urls["gateway"], PASSWORD, roles=("doctor",))
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    status, _ = api.call("GET", "/diagnoses?status=WAITING", "doctor",
                         headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})
    assert status == 200

    def both():
        servers = {attribute(s, "hospital.service"): s for _, s in receiver.trace(trace_id)
                   if s.kind == s.SPAN_KIND_SERVER}
        return servers if {"gateway", "diagnosis"} <= servers.keys() else None

    servers = wait_until(both, 20, "the gateway's span and diagnosis's", every=0.1)
    assert servers["gateway"].parent_span_id.hex() == caller_span
    assert servers["diagnosis"].parent_span_id == servers["gateway"].span_id
    assert servers["diagnosis"].name == "GET /diagnoses"
    assert attribute(servers["diagnosis"], "hospital.forwarded_by") is None


def test_the_screens_calls_carry_the_trace_of_the_page(traced):
    urls, api, receiver = traced
    # The doctor's worklist page, requested with a traceparent: its call to the diagnosis
    # service is in that trace, a child of the page's span.
    import http.cookiejar
    import urllib.parse
    import urllib.request
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = browser.open(urls["gateway"] + "/login").read().decode()
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    browser.open(urls["gateway"] + "/login", data=urllib.parse.urlencode(
        {"csrf": csrf, "username": "doctor", "password": PASSWORD}).encode())
    trace_id = secrets.token_hex(16)
    request = urllib.request.Request(
        urls["gateway"] + "/doctor", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    assert browser.open(request).status == 200
    # The diagnosis service's span ends before the page's does, so the two may arrive in
    # different export batches: wait for both.
    def page_and_service():
        spans = [s for _, s in receiver.trace(trace_id)]
        page = [s for s in spans if s.name == "GET /doctor" and attribute(s, "hospital.service") == "gateway"]
        service = [s for s in spans
                   if attribute(s, "hospital.service") == "diagnosis" and s.kind == s.SPAN_KIND_SERVER]
        return (page[0], service[0]) if page and service else None

    page_span, service_span = wait_until(page_and_service, 20, "the page's span and the service's", every=0.1)
    assert service_span.parent_span_id == page_span.span_id


def test_logs_are_json_lines_that_name_the_trace(traced):
    urls, api, receiver = traced
    trace_id, span = secrets.token_hex(16), secrets.token_hex(8)
    import json
    import urllib.error
    import urllib.request
    # A refused token is logged (notice) while the request's span is current.
    request = urllib.request.Request(
        urls["gateway"] + "/receptions",
        headers={"traceparent": f"00-{trace_id}-{span}-01", "Authorization": "Bearer not.a.token"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 401

    def lines():
        with open(api.log) as log:
            return [json.loads(line) for line in log if line.strip()]

    wait_until(lambda: any(l.get("trace_id") == trace_id for l in lines()), 20, "a log line naming the trace",
               every=0.1)
    entries = lines()
    for entry in entries:  # every line one JSON object with the fields Loki is told about
        assert {"timestamp", "level", "service", "message"} <= set(entry), entry
        assert entry["timestamp"].endswith("Z")
        assert "추적환자" not in json.dumps(entry, ensure_ascii=False)  # no patient data
    refusal = next(l for l in entries if l.get("trace_id") == trace_id)
    assert refusal["message"] == "token refused" and refusal["service"] == "gateway"
    assert len(refusal["span_id"]) == 16 and refusal["span_id"] != span
    assert refusal["request_id"]
