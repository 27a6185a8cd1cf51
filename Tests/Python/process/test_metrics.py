"""Metrics: every port's /metrics after real visits, checked by Prometheus' own promtool."""

import json
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from hospital_api import Api, add_accounts, serve
from waiting import wait_until

PASSWORD = "metrics test password"
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-")
SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(text: str) -> list[tuple[str, dict, float]]:
    series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SERIES.match(line)
        assert match, f"not a series line: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        series.append((match.group(1), labels, float(match.group(3))))
    return series


def value(series, name: str, **labels) -> float:
    return sum(v for n, l, v in series if n == name and all(l.get(k) == w for k, w in labels.items()))


@pytest.fixture(scope="module")
def system():
    data = tempfile.mkdtemp(prefix="hospital-metrics-")
    add_accounts(data, PASSWORD)
    process, urls = serve(data)
    api = Api.sign_in(urls["gateway"], PASSWORD)
    # A few whole visits, a rejection and a cancellation; a detail read with an id in its path.
    visits = [api.visit(f"지표환자{i}") for i in range(3)]
    api.visit("지표반려", outcome="reject")
    api.cancel("지표취소")
    assert api.call("GET", f"/receptions/{visits[0]}", "desk")[0] == 200
    yield urls, api
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return answer.read().decode()


@pytest.mark.parametrize("service", ["gateway", "reception", "diagnosis", "examination", "patient-management"])
def test_every_port_passes_promtool_and_labels_routes_by_template(system, service):
    urls, _ = system
    text = scrape(urls[service])
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    series = parse(text)
    assert {l.get("service") for _, l, _ in series} == {service}  # each port shows its own service
    requests = [l for n, l, _ in series if n == "http_server_request_duration_seconds_count"]
    assert requests, "no HTTP series"
    for labels in requests:
        assert set(labels) >= {"http_request_method", "http_route", "http_response_status_code"}
        assert not UUID.search(labels["http_route"]), labels  # a template, never an id
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                 "http_server_active_requests"):
        assert value(series, name) > 0 or name == "http_server_active_requests", name
    if service != "gateway":
        for name in ("hospital_outbox_waiting_events", "hospital_outbox_oldest_age_seconds"):
            assert any(n == name for n, _, _ in series), name


def test_the_gateway_and_the_services_count_requests_by_route(system):
    urls, _ = system
    gateway = parse(scrape(urls["gateway"]))
    assert value(gateway, "http_server_request_duration_seconds_count", http_route="/receptions/:id",
                 http_request_method="GET", http_response_status_code="200") >= 1
    assert value(gateway, "http_server_request_duration_seconds_count", http_route="/receptions",
                 http_request_method="POST", http_response_status_code="201") >= 5
    reception = parse(scrape(urls["reception"]))
    assert value(reception, "http_server_request_duration_seconds_count", http_route="/receptions",
                 http_request_method="POST", http_response_status_code="201") >= 5
    assert value(reception, "hospital_events_published_total") >= 6  # 5 registrations, 1 cancellation


def test_consumers_report_handled_events_lag_and_dead_letters(system):
    urls, _ = system
    for service in ("diagnosis", "examination", "patient-management"):
        series = parse(scrape(urls[service]))
        assert value(series, "hospital_events_handled_total", consumer_group=service, outcome="handled") >= 1, service
        assert value(series, "hospital_event_handling_delay_seconds_count", consumer_group=service) >= 1, service
        assert any(n == "hospital_consumer_lag_events" and l.get("consumer_group") == service for n, l, _ in series)
        assert any(n == "hospital_dead_letters_waiting" and l.get("consumer_group") == service for n, l, _ in series)
    board = parse(scrape(urls["patient-management"]))
    assert value(board, "hospital_events_handled_total", event_type="TreatmentReceived", outcome="handled") == 5
    # Everything is handled in the end: nothing behind (the last cancellation's DiagnosisCanceled
    # may still be on its way when the fixture is done), nothing waiting.
    def caught_up():
        board = parse(scrape(urls["patient-management"]))
        return board if value(board, "hospital_consumer_lag_events") == 0 else None

    board = wait_until(caught_up, 20, "the board's consumer catching up", every=0.1)
    assert value(board, "hospital_dead_letters_waiting") == 0


def test_the_visit_funnel_and_waiting_times(system):
    urls, _ = system
    board = parse(scrape(urls["patient-management"]))
    assert value(board, "hospital_visits_total", event="registered") == 5
    assert value(board, "hospital_visits_total", event="completed") == 3
    assert value(board, "hospital_visits_total", event="rejected") == 1
    assert value(board, "hospital_visits_total", event="canceled") == 1
    for step, count in (("registration_to_prescription", 4), ("prescription_to_exam", 4),
                        ("exam_to_outcome", 3), ("registration_to_outcome", 4)):
        assert value(board, "hospital_visit_wait_seconds_count", step=step) == count, step
        assert value(board, "hospital_visit_wait_seconds_sum", step=step) > 0, step


def test_metrics_can_be_moved_or_turned_off():
    data = tempfile.mkdtemp(prefix="hospital-metrics-")
    try:
        for path, expected in (("/internal/metrics", 200), ("off", 404)):
            process, urls = serve(data, env={"HOSPITAL_METRICS_PATH": path})
            try:
                target = path if path != "off" else "/metrics"
                for service in ("gateway", "reception"):
                    try:
                        with urllib.request.urlopen(urls[service] + target, timeout=10) as answer:
                            status = answer.status
                    except urllib.error.HTTPError as error:
                        status = error.code
                    # Off: the gateway answers 404; a service port refuses an unknown path without a token.
                    assert status == expected or (path == "off" and status == 401), (path, service, status)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def dashboard_queries():
    root = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / "components" / "monitoring" / "dashboards"
    queries = []
    for path in sorted(root.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                queries.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return queries


def test_prometheus_scrapes_every_port_and_every_dashboard_query_has_data(system, tmp_path):
    urls, api = system
    port = _free_port()
    targets = [urllib.parse.urlparse(url).netloc for url in urls.values()]
    rules = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "hospital", "static_configs": [{"targets": targets}]}],
    }))
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def query(expr: str) -> list:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    try:
        started = time.monotonic()
        # Every target up, with two scrapes or more (rates need two samples); refused until
        # Prometheus listens.
        wait_until(lambda: len(query("count_over_time(up[1m]) >= 3 and up == 1")) == len(targets), 60,
                   "Prometheus scraping every port", every=0.5, ignoring=(urllib.error.URLError, ConnectionError))
        api.visit("지표추가")  # one more visit while Prometheus watches, until it has seen it
        # Until 90 s after the start, the wait above included.
        wait_until(lambda: query('sum(hospital_visits_total{event="completed"}) >= 4'),
                   started + 90 - time.monotonic(), "Prometheus seeing the last visit", every=0.2)
        empty = [(title, expr) for title, expr in dashboard_queries() if not query(expr)]
        assert not empty, f"dashboard queries without data: {empty}"
        assert len(dashboard_queries()) >= 20
        # The rules load and evaluate (no alert fires on a healthy system).
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as answer:
            groups = json.load(answer)["data"]["groups"]
        assert sum(len(g["rules"]) for g in groups) == 19
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        assert not query('ALERTS{alertstate="firing"}')
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_the_alert_rules_pass_promtool_and_their_unit_tests():
    root = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", str(root / "alerts.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        ["promtool", "test", "rules", str(root / "tests" / "alerts_test.yml")], capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
