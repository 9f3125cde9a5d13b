"""The rendered chart against a real API server: a server-side dry run in a namespace that
enforces Pod Security ``restricted`` accepts every object without a warning.

This is what offline validation and our policy rules promise, checked by Kubernetes itself
(admission, defaulting, immutable-field and PodSecurity checks). Needs the local cluster
(``make cluster-up``); the monitoring objects (ServiceMonitor, PrometheusRule) are left out, as a
cluster started without the Prometheus add-on lacks their CRDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import chart, config, helm, proc
from ci.cluster.base import ClusterInfo
from ci.errors import CiError

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restricted_namespace(cluster_info: ClusterInfo) -> Iterator[str]:
    name = f"chart-psa-{uuid.uuid4().hex[:8]}"
    kubectl = (cluster_info.kubectl, "--kubeconfig", str(cluster_info.kubeconfig))
    proc.run((*kubectl, "create", "namespace", name), timeout=60)
    try:
        proc.run(
            (*kubectl, "label", "namespace", name,
             "pod-security.kubernetes.io/enforce=restricted",
             "pod-security.kubernetes.io/warn=restricted"),
            timeout=60,
        )  # fmt: skip
        yield name
    finally:
        proc.run((*kubectl, "delete", "namespace", name, "--wait=false"), timeout=60, check=False)


@pytest.mark.parametrize("major", [3, 4])
@pytest.mark.parametrize("env_name", ["staging", "prod"])
def test_server_accepts_every_object_under_pod_security_restricted(
    cluster_info: ClusterInfo, restricted_namespace: str, tmp_path: Path, major: int, env_name: str
) -> None:
    try:
        h = helm.find(major)
    except CiError as exc:
        pytest.fail(f"Helm {major} is needed: {exc} (run `make tools`)")
    cfg = config.load(ROOT / "ci.yaml")
    env = cfg.environment(env_name)
    off = ["metrics.serviceMonitor.enabled=false", "metrics.prometheusRule.enabled=false"]
    rendered = chart.render(cfg, h, env, off)
    manifests = tmp_path / "all.yaml"
    manifests.write_text(rendered.text)
    result = proc.run(
        (cluster_info.kubectl, "--kubeconfig", str(cluster_info.kubeconfig),
         "apply", "--dry-run=server",
         "--namespace", restricted_namespace, "-f", str(manifests)),
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    accepted = [ln for ln in result.stdout.splitlines() if ln.endswith("(server dry run)")]
    assert len(accepted) == len(rendered.manifests)
