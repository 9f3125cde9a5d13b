"""The local cluster as the pipeline sees it: ``ci cluster status`` and the end-to-end checks.

They need a running cluster (``make cluster-up``; ``make test-e2e`` starts one). Provider
selection and state parsing, which need none, are tested in ``tests/unit/test_cluster.py``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci import proc
from ci.cli import main
from ci.cluster.base import ClusterInfo
from ci.errors import ProcessError

e2e = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def kubectl_json(cluster_info: ClusterInfo, *args: str) -> dict[str, object]:
    argv = (cluster_info.kubectl, "--kubeconfig", str(cluster_info.kubeconfig), *args, "-o", "json")
    result: dict[str, object] = json.loads(proc.run(argv, timeout=60).stdout)
    return result


@e2e
def test_status_names_a_reachable_kubeconfig(cluster_info: ClusterInfo) -> None:
    assert cluster_info.kubeconfig.is_file()
    version = kubectl_json(cluster_info, "version")
    assert "serverVersion" in version


@e2e
def test_node_is_ready(cluster_info: ClusterInfo) -> None:
    nodes = kubectl_json(cluster_info, "get", "nodes")["items"]
    assert isinstance(nodes, list)
    assert nodes
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"


@e2e
def test_default_storage_class_and_ingress_class(builtin_cluster: ClusterInfo) -> None:
    classes = kubectl_json(builtin_cluster, "get", "storageclass")["items"]
    assert isinstance(classes, list)
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults == [builtin_cluster.storage_class]
    ingress = kubectl_json(builtin_cluster, "get", "ingressclass", "nginx")
    assert ingress["spec"] == {"controller": "k8s.io/ingress-nginx"}


@e2e
def test_cli_status_prints_the_kubeconfig(cluster_info: ClusterInfo) -> None:
    result = CliRunner().invoke(main, ["cluster", "status"])
    assert result.exit_code == 0, result.output
    assert str(cluster_info.kubeconfig) in result.output


@e2e
def test_end_to_end_checks_pass(builtin_cluster: ClusterInfo) -> None:
    """DNS, a registry image on two replicas, Service by DNS name, PVC, Ingress (test.sh)."""
    script = ROOT / "hack" / "cluster" / "test.sh"
    result = proc.run(("bash", str(script)), timeout=900, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout


def cluster_images(cluster_info: ClusterInfo) -> dict[str, str]:
    """The add-on images the built-in cluster runs (``images.env`` beside its kubeconfig)."""
    env = cluster_info.kubeconfig.parent / "images.env"
    pairs = (line.split("=", 1) for line in env.read_text(encoding="utf-8").splitlines() if line)
    return dict(pairs)


# "schedule-ci   123m   6%   1510Mi   19%"
TOP_NODE = re.compile(r"^(\S+) +(\d+)m +(\d+)% +(\d+)Mi +(\d+)%$")


@e2e
def test_kubectl_top_node_reports_usage(builtin_cluster: ClusterInfo) -> None:
    """metrics-server answers through the aggregation layer with the node's real usage."""
    service = kubectl_json(builtin_cluster, "get", "apiservice", "v1beta1.metrics.k8s.io")
    status = service["status"]
    assert isinstance(status, dict)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Available"] == "True"
    argv = (builtin_cluster.kubectl, "--kubeconfig", str(builtin_cluster.kubeconfig), "top", "node")
    deadline = time.monotonic() + 60
    while True:
        result = proc.run((*argv, "--no-headers"), timeout=30, check=False)
        match = TOP_NODE.match(result.stdout.strip())
        if match or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert match, result.stdout + result.stderr
    node, cpu_millis, _, memory_mib, _ = match.groups()
    assert node == builtin_cluster.node_name
    assert int(cpu_millis) > 0
    assert int(memory_mib) > 0


HPA_NAMESPACE = "cluster-e2e-hpa"


def hpa_manifest(image: str) -> str:
    """A Deployment held by its CPU limit at twice its request, and an HPA on CPU utilisation."""
    labels = {"app": "spin"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "spin", "namespace": HPA_NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "spin",
                            "image": image,
                            "command": ["sh", "-c", "while :; do :; done"],
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "8Mi"},
                                "limits": {"cpu": "20m", "memory": "16Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "spin", "namespace": HPA_NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "spin"},
            "minReplicas": 1,
            "maxReplicas": 1,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": HPA_NAMESPACE}}
    return "\n".join(json.dumps(obj) for obj in (namespace, deployment, hpa))


@e2e
def test_hpa_reads_cpu_utilisation(builtin_cluster: ClusterInfo) -> None:
    """The controller-manager gets pod CPU from metrics.k8s.io: a number, not <unknown>."""
    kubectl = (builtin_cluster.kubectl, "--kubeconfig", str(builtin_cluster.kubeconfig))
    delete = (*kubectl, "delete", "namespace", HPA_NAMESPACE, "--ignore-not-found")
    proc.run((*delete, "--timeout", "120s"), timeout=150)
    image = cluster_images(builtin_cluster)["BUSYBOX_IMAGE"]
    try:
        proc.run((*kubectl, "apply", "-f", "-"), input=hpa_manifest(image), timeout=60)
        started = time.monotonic()
        deadline = started + 180
        utilisation = None
        while utilisation is None and time.monotonic() < deadline:
            hpa = kubectl_json(builtin_cluster, "-n", HPA_NAMESPACE, "get", "hpa", "spin")
            status = hpa.get("status", {})
            assert isinstance(status, dict)
            # until it has a measurement the controller lists an empty metric ("<unknown>")
            for metric in status.get("currentMetrics") or []:
                current = metric.get("resource", {}).get("current", {})
                utilisation = current.get("averageUtilization")
            if utilisation is None:
                time.sleep(3)
        assert utilisation is not None, f"no CPU utilisation after 180 s: {status}"
        # the limit holds it near 200 % of its request; on a busy machine its small CPU share can
        # get less, but a spinning container never measures zero
        assert utilisation > 0, status
        print(f"HPA: CPU at {utilisation}% of the request after {time.monotonic() - started:.0f} s")
    finally:
        proc.run((*delete, "--wait=false"), timeout=60, check=False)


# ------------------------------------------------------------ NetworkPolicy enforcement

POLICY_SERVER_NS = "cluster-e2e-netpol"
POLICY_CLIENT_NS = "cluster-e2e-netpol-peer"
POLICY_HOST = "netpol.cluster-e2e.local"
POLICY_BODY = "netpol-e2e-web"


def policy_workloads(image: str) -> str:
    """A web pod with a Service and an Ingress in one namespace, a client pod in another."""
    web_labels = {"app": "web"}
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": POLICY_SERVER_NS}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": POLICY_CLIENT_NS}},
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": POLICY_SERVER_NS, "labels": web_labels},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "web",
                        "image": image,
                        "command": [
                            "sh",
                            "-c",
                            f"mkdir -p /www && echo {POLICY_BODY} > /www/index.html"
                            " && exec httpd -f -p 8080 -h /www",
                        ],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {
                            "httpGet": {"path": "/", "port": 8080},
                            "periodSeconds": 1,
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": POLICY_SERVER_NS},
            "spec": {"selector": web_labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": POLICY_SERVER_NS},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "host": POLICY_HOST,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": POLICY_CLIENT_NS},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "client", "image": image, "command": ["sleep", "3600"]}],
            },
        },
    ]
    return "\n".join(json.dumps(obj) for obj in objects)


def network_policy(name: str, pod_selector: Mapping[str, object], source_ns: str | None) -> str:
    """An Ingress policy: admit the pods of ``source_ns``, or nothing when it is None."""
    rules: list[dict[str, object]] = []
    if source_ns is not None:
        selector = {"matchLabels": {"kubernetes.io/metadata.name": source_ns}}
        rules = [{"from": [{"namespaceSelector": selector}]}]
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": POLICY_SERVER_NS},
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": rules},
    }
    return json.dumps(policy)


class PolicyLab:
    """The workloads of the NetworkPolicy tests and the two ways of reaching the web pod."""

    def __init__(self, info: ClusterInfo) -> None:
        self.info = info
        self.kubectl = (info.kubectl, "--kubeconfig", str(info.kubeconfig))

    def apply(self, text: str) -> None:
        proc.run((*self.kubectl, "apply", "-f", "-"), input=text, timeout=60)

    def client_reaches_web(self) -> bool:
        """HTTP from the client pod to the web Service by DNS name (nc: busybox wget crashes)."""
        request = "printf 'GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n'"
        target = f"web.{POLICY_SERVER_NS}.svc.cluster.local 80"
        argv = (*self.kubectl, "-n", POLICY_CLIENT_NS, "exec", "client", "--")
        shell = f"{request} | nc -w 3 {target}"
        result = proc.run((*argv, "sh", "-c", shell), timeout=30, check=False)
        return POLICY_BODY in result.stdout

    def ingress_reaches_web(self) -> bool:
        """HTTP through the ingress controller's local port, as the smoke checks go."""
        request = urllib.request.Request(f"{self.info.ingress_url}/", headers={"Host": POLICY_HOST})
        try:
            with urllib.request.urlopen(request, timeout=4) as response:
                return POLICY_BODY in response.read().decode()
        except (OSError, urllib.error.URLError):
            return False


def eventually(check: Callable[[], bool], want: bool, seconds: float = 45) -> bool:
    """Poll ``check`` until it returns ``want``: policies take effect asynchronously."""
    deadline = time.monotonic() + seconds
    while check() != want:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


@pytest.fixture
def policy_lab(builtin_cluster: ClusterInfo) -> Iterator[PolicyLab]:
    cluster_info = builtin_cluster
    lab = PolicyLab(cluster_info)
    namespaces = ("namespace", POLICY_SERVER_NS, POLICY_CLIENT_NS, "--ignore-not-found")
    proc.run((*lab.kubectl, "delete", *namespaces, "--timeout", "120s"), timeout=150)
    lab.apply(policy_workloads(cluster_images(cluster_info)["BUSYBOX_IMAGE"]))
    try:
        for ns, pod in ((POLICY_SERVER_NS, "web"), (POLICY_CLIENT_NS, "client")):
            wait = ("-n", ns, "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout", "120s")
            proc.run((*lab.kubectl, *wait), timeout=150)
        # without a policy both ways are open: a refusal below can only come from a policy
        assert eventually(lab.client_reaches_web, True), "client pod cannot reach web at all"
        assert eventually(lab.ingress_reaches_web, True), "the Ingress does not reach web at all"
        yield lab
    finally:
        proc.run((*lab.kubectl, "delete", *namespaces, "--wait=false"), timeout=60, check=False)


@e2e
def test_network_policy_admits_only_selected_namespaces(policy_lab: PolicyLab) -> None:
    """deny-all refuses a pod of another namespace; a policy selecting its namespace admits it."""
    policy_lab.apply(network_policy("deny-all", {}, None))
    assert eventually(policy_lab.client_reaches_web, False), "deny-all did not refuse the client"
    web = {"matchLabels": {"app": "web"}}
    policy_lab.apply(network_policy("web-from-peer", web, POLICY_CLIENT_NS))
    assert eventually(policy_lab.client_reaches_web, True), "the namespace selector did not admit"


@e2e
def test_ingress_answers_where_only_ingress_nginx_is_admitted(policy_lab: PolicyLab) -> None:
    """The ingress controller's traffic comes from namespace ingress-nginx, as the chart expects."""
    policy_lab.apply(network_policy("deny-all", {}, None))
    assert eventually(policy_lab.ingress_reaches_web, False), "deny-all did not refuse the Ingress"
    web = {"matchLabels": {"app": "web"}}
    policy_lab.apply(network_policy("web-from-ingress", web, "ingress-nginx"))
    assert eventually(policy_lab.ingress_reaches_web, True), "ingress-nginx was not admitted"
    assert not policy_lab.client_reaches_web(), "ingress-nginx's policy admitted another namespace"


# ------------------------------------------------------------ platform add-ons (addons.sh)


def require_addon(info: ClusterInfo, addon: str) -> None:
    """Skip, naming the reason, when ``CLUSTER_ADDONS`` left the add-on out at start-up."""
    started = (info.kubeconfig.parent / "addons").read_text(encoding="utf-8").split()
    if addon not in started:
        pytest.skip(f"add-on {addon} not started (CLUSTER_ADDONS); started: {started or 'none'}")


def service_get(info: ClusterInfo, namespace: str, service: str, path: str) -> str:
    """GET through the API server's service proxy: the add-ons listen on the pod network only."""
    url = f"/api/v1/namespaces/{namespace}/services/{service}/proxy{path}"
    argv = (info.kubectl, "--kubeconfig", str(info.kubeconfig), "get", "--raw", url)
    return proc.run(argv, timeout=30).stdout


def poll(probe: Callable[[], str | None], seconds: float) -> str | None:
    """Call ``probe`` until it returns a value or time runs out; None when it never did."""
    deadline = time.monotonic() + seconds
    while (value := probe()) is None and time.monotonic() < deadline:
        time.sleep(2)
    return value


@e2e
def test_gateway_api_crds_are_the_upstream_standard_channel(builtin_cluster: ClusterInfo) -> None:
    crd = kubectl_json(builtin_cluster, "get", "crd", "httproutes.gateway.networking.k8s.io")
    metadata = crd["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["annotations"]["gateway.networking.k8s.io/channel"] == "standard"
    gateway = kubectl_json(builtin_cluster, "-n", "ingress-nginx", "get", "gateway", "local")
    status = gateway["status"]
    assert isinstance(status, dict)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions.get("Programmed") == "True", status


ROUTE_NS = "cluster-e2e-route"
ROUTE_HOST = "route.cluster-e2e.local"


def route_workloads(image: str) -> str:
    """A web pod and Service, reached by an HTTPRoute on the Gateway ingress-nginx/local."""
    labels = {"app": "web"}
    command = f"mkdir -p /www && echo {ROUTE_NS} > /www/index.html && exec httpd -f -p 8080 -h /www"
    objects: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ROUTE_NS}},
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": ROUTE_NS, "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": image, "command": ["sh", "-c", command]}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ROUTE_NS},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": ROUTE_NS},
            "spec": {
                "parentRefs": [{"name": "local", "namespace": "ingress-nginx"}],
                "hostnames": [ROUTE_HOST],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        },
    ]
    return "\n".join(json.dumps(obj) for obj in objects)


@e2e
def test_httproute_answers_through_traefik(builtin_cluster: ClusterInfo) -> None:
    kubectl = (builtin_cluster.kubectl, "--kubeconfig", str(builtin_cluster.kubeconfig))
    delete = (*kubectl, "delete", "namespace", ROUTE_NS, "--ignore-not-found")
    proc.run((*delete, "--timeout", "120s"), timeout=150)
    image = cluster_images(builtin_cluster)["BUSYBOX_IMAGE"]
    request = urllib.request.Request(
        f"{builtin_cluster.ingress_url}/", headers={"Host": ROUTE_HOST}
    )

    def answer() -> str | None:
        try:
            with urllib.request.urlopen(request, timeout=4) as response:
                body: str = response.read().decode()
                return body if ROUTE_NS in body else None
        except (OSError, urllib.error.URLError):
            return None

    try:
        proc.run((*kubectl, "apply", "-f", "-"), input=route_workloads(image), timeout=60)
        assert poll(answer, 90), f"no answer from {ROUTE_HOST} through the Gateway"
    finally:
        proc.run((*delete, "--wait=false"), timeout=60, check=False)


@e2e
def test_prometheus_scrapes_traefik_through_its_servicemonitor(
    builtin_cluster: ClusterInfo,
) -> None:
    """The operator turned the ServiceMonitor into a scrape pool, and the target is up."""
    require_addon(builtin_cluster, "prometheus")
    pool = "serviceMonitor/ingress-nginx/traefik/0"

    def healthy() -> str | None:
        targets = json.loads(
            service_get(builtin_cluster, "monitoring", "prometheus:9090", "/api/v1/targets")
        )
        health = [t["health"] for t in targets["data"]["activeTargets"] if t["scrapePool"] == pool]
        return "up" if health and set(health) == {"up"} else None

    assert poll(healthy, 150), f"no healthy target in scrape pool {pool}"


@e2e
def test_collector_span_reaches_jaeger(builtin_cluster: ClusterInfo) -> None:
    """OTLP/HTTP to the collector's Service, then the trace by id from Jaeger's query API."""
    require_addon(builtin_cluster, "otel")
    require_addon(builtin_cluster, "jaeger")
    service = kubectl_json(
        builtin_cluster, "-n", "observability", "get", "service", "otel-collector"
    )
    spec = service["spec"]
    assert isinstance(spec, dict)
    trace_id = f"{time.time_ns():032x}"
    now = time.time_ns()
    span = {"traceId": trace_id, "spanId": trace_id[-16:], "name": "e2e", "kind": 2}
    span |= {"startTimeUnixNano": str(now - 1_000_000), "endTimeUnixNano": str(now)}
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "cluster-e2e"}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    request = urllib.request.Request(
        f"http://{spec['clusterIP']}:4318/v1/traces",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    def found() -> str | None:
        try:
            text = service_get(
                builtin_cluster, "monitoring", "jaeger:16686", f"/api/traces/{trace_id}"
            )
        except ProcessError:
            return None
        return text if "cluster-e2e" in text else None

    assert poll(found, 60), f"trace {trace_id} not found in Jaeger"


@e2e
def test_victorialogs_holds_pod_logs_with_kubernetes_attributes(
    builtin_cluster: ClusterInfo,
) -> None:
    """Traefik's own log lines, collected from its pod's files, carry its namespace and pod."""
    require_addon(builtin_cluster, "otel")
    require_addon(builtin_cluster, "logs")
    query = urllib.parse.quote('k8s.namespace.name:="ingress-nginx" | limit 5')

    def lines() -> str | None:
        text = service_get(
            builtin_cluster,
            "monitoring",
            "victorialogs:9428",
            f"/select/logsql/query?query={query}",
        )
        return text if text.strip() else None

    text = poll(lines, 60)
    assert text, "no log line of namespace ingress-nginx in VictoriaLogs"
    first = json.loads(text.splitlines()[0])
    assert first["k8s.namespace.name"] == "ingress-nginx"
    assert first["k8s.pod.name"].startswith("traefik-")
