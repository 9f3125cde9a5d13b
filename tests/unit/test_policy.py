"""Policy rules on hand-written objects: a compliant workload passes, each fault its own rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ci import policy
from ci.manifests import Manifest


def container(name: str = "app", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": "registry.example/app:1.2.3",
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    c.update(extra)
    return c


def workload(kind: str = "Deployment", **spec: Any) -> dict[str, Any]:
    pod = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container()],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "labels": {}, "annotations": {}},
        "spec": {"template": {"spec": pod}, **spec},
    }


def rules(*objs: dict[str, Any]) -> list[str]:
    manifests = [Manifest("app/templates/x.yaml", o) for o in objs]
    return sorted(i.rule for i in policy.evaluate(manifests))


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec = policy.pod_spec(Manifest("x", obj))
    assert spec is not None
    return spec


def test_compliant_workloads_pass() -> None:
    assert rules(workload("Deployment", replicas=2), workload("StatefulSet")) == []


def test_root_container_is_sec001() -> None:
    obj = workload()
    pod_of(obj)["containers"][0]["securityContext"]["runAsUser"] = 0
    assert rules(obj) == ["SEC001"]


def test_missing_run_as_non_root_is_sec001() -> None:
    obj = workload()
    del pod_of(obj)["securityContext"]["runAsNonRoot"]
    del pod_of(obj)["containers"][0]["securityContext"]["runAsNonRoot"]
    issues = policy.evaluate([Manifest("x", obj)])
    assert [i.rule for i in issues] == ["SEC001"]
    assert "may run as root" in issues[0].message


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        ("allowPrivilegeEscalation", True, "SEC002"),
        ("capabilities", {"drop": ["NET_RAW"]}, "SEC003"),
        ("capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}, "SEC003"),
        ("privileged", True, "SEC005"),
        ("readOnlyRootFilesystem", False, "SEC006"),
    ],
)
def test_container_security_rules(path: str, value: Any, rule: str) -> None:
    obj = workload()
    pod_of(obj)["containers"][0]["securityContext"][path] = value
    assert rules(obj) == [rule]


def test_writable_root_is_only_a_warning() -> None:
    obj = workload()
    pod_of(obj)["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    (issue,) = policy.evaluate([Manifest("x", obj)])
    assert issue.severity == "warning"


def test_seccomp_from_container_is_enough() -> None:
    obj = workload()
    del pod_of(obj)["securityContext"]["seccompProfile"]
    assert rules(obj) == ["SEC004"]
    pod_of(obj)["containers"][0]["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    assert rules(obj) == []


def test_host_access_is_sec005() -> None:
    obj = workload()
    pod_of(obj)["hostNetwork"] = True
    pod_of(obj)["volumes"] = [{"name": "h", "hostPath": {"path": "/"}}]
    assert rules(obj) == ["SEC005", "SEC005"]


def test_only_restricted_volume_types() -> None:
    obj = workload()
    pod_of(obj)["volumes"] = [
        {"name": "ok", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "x"}},
        {"name": "nfs", "nfs": {"server": "s", "path": "/"}},
    ]
    (issue,) = policy.evaluate([Manifest("x", obj)])
    assert issue.rule == "SEC005"
    assert "volume nfs is a nfs" in issue.message


def test_missing_resources_is_res001_with_the_keys() -> None:
    obj = workload()
    del pod_of(obj)["containers"][0]["resources"]["limits"]
    (issue,) = policy.evaluate([Manifest("x", obj)])
    assert issue.rule == "RES001"
    assert "limits.cpu, limits.memory" in issue.message


def test_init_containers_need_resources_too() -> None:
    obj = workload()
    init = container("init")
    del init["resources"]
    pod_of(obj)["initContainers"] = [init]
    assert rules(obj) == ["RES001"]


def test_statefulset_requests_must_equal_limits() -> None:
    obj = workload("StatefulSet")
    pod_of(obj)["containers"][0]["resources"]["limits"]["memory"] = "1Gi"
    assert rules(obj) == ["RES002"]
    assert rules(workload("Deployment")) == []  # a Deployment may burst


def test_quantities_compare_by_value() -> None:
    obj = workload("StatefulSet")
    res = pod_of(obj)["containers"][0]["resources"]
    res["requests"] = {"cpu": "1", "memory": "1Gi"}
    res["limits"] = {"cpu": "1000m", "memory": "1024Mi"}
    assert rules(obj) == []
    res["limits"] = {"cpu": 1, "memory": "1073741824"}
    assert rules(obj) == []
    res["limits"] = {"cpu": "0.5", "memory": "1G"}
    assert rules(obj) == ["RES002", "RES002"]


@pytest.mark.parametrize("bad", ["1x", "lots", "1.5ki", "NaN", True])
@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_a_bad_quantity_is_res001_naming_the_field(kind: str, bad: Any) -> None:
    obj = workload(kind)
    pod_of(obj)["containers"][0]["resources"]["limits"]["memory"] = bad
    (issue,) = policy.evaluate([Manifest("x", obj)])
    assert issue.rule == "RES001"
    assert f"container app resources limits.memory {bad!r}: not a Kubernetes quantity" in (
        issue.message
    )
    assert issue.needle == "name: app"


def test_long_running_containers_need_probes() -> None:
    obj = workload()
    del pod_of(obj)["containers"][0]["readinessProbe"]
    assert rules(obj) == ["PRB001"]


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("app", False),
        ("app:latest", False),
        ("registry:5000/app", False),
        ("registry:5000/app:1.0", True),
        ("app@sha256:" + "a" * 64, True),
    ],
)
def test_images_must_be_pinned(image: str, ok: bool) -> None:
    obj = workload()
    pod_of(obj)["containers"][0]["image"] = image
    assert rules(obj) == ([] if ok else ["IMG001"])


def job(annotations: dict[str, str], component: str = "migration") -> dict[str, Any]:
    obj = workload("Job")
    obj["apiVersion"] = "batch/v1"
    obj["metadata"]["annotations"] = annotations
    obj["metadata"]["labels"] = {"app.kubernetes.io/component": component}
    for c in pod_of(obj)["containers"]:
        c.pop("livenessProbe")
        c.pop("readinessProbe")
    return obj


GOOD_HOOK = {
    "helm.sh/hook": "pre-install,pre-upgrade",
    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
}


def test_good_migration_job_passes() -> None:
    assert rules(job(GOOD_HOOK)) == []
    post = {**GOOD_HOOK, "helm.sh/hook": "post-install,pre-upgrade"}
    assert rules(job(post)) == []


def test_plain_job_is_hook001() -> None:
    assert rules(job({})) == ["HOOK001"]


def test_hook_without_delete_policy_is_hook002() -> None:
    notes = {"helm.sh/hook": "pre-install,pre-upgrade"}
    assert rules(job(notes, component="other")) == ["HOOK002"]


def test_migration_hook_events_and_policy_are_hook003() -> None:
    notes = {**GOOD_HOOK, "helm.sh/hook": "pre-install"}
    assert rules(job(notes)) == ["HOOK003"]
    notes = {**GOOD_HOOK, "helm.sh/hook-delete-policy": "before-hook-creation"}
    assert rules(job(notes)) == ["HOOK003"]


def hpa(target: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": target},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
    }


def test_replicas_on_an_hpa_target_is_hpa001() -> None:
    scaled = workload("Deployment", replicas=3)
    assert rules(scaled, hpa("web")) == ["HPA001"]
    assert rules(workload("Deployment"), hpa("web")) == []
    assert rules(copy.deepcopy(scaled), hpa("other")) == []


def test_cronjob_pods_are_checked() -> None:
    inner = job(GOOD_HOOK, component="backup")
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "backup"},
        "spec": {"jobTemplate": {"spec": inner["spec"]}},
    }
    pod_of(cron)["containers"][0]["image"] = "tools"
    assert rules(cron) == ["IMG001"]


def test_every_rule_is_described() -> None:
    assert {r.__name__ for r in policy.ALL_RULES}
    assert all(
        rule_id in policy.RULES
        for rule_id in (
            "SEC001",
            "SEC002",
            "SEC003",
            "SEC004",
            "SEC005",
            "SEC006",
            "RES001",
            "RES002",
            "PRB001",
            "IMG001",
            "HOOK001",
            "HOOK002",
            "HOOK003",
            "HPA001",
        )
    )
