"""Deploy safety without a cluster: inputs first, fail fast, the Lease, skipping what did not
change (with its drift check)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ci import config, deploy, helm, kube
from ci.deploy import inputs, skip
from ci.errors import DeployError
from ci.kube import lease
from ci.registry import Client

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "2" * 64
NOW = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(ROOT / "ci.yaml")


@pytest.fixture
def plan(tmp_path: Path, cfg: config.Config) -> deploy.Plan:
    items = [
        {
            "name": i.name,
            "repository": f"127.0.0.1:5000/st/{i.name}",
            "digest": DIGEST,
            "ref": f"127.0.0.1:5000/st/{i.name}@{DIGEST}",
        }
        for i in cfg.images
    ]
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"git": {"sha": "abc123" * 6}, "images": items}))
    opts = deploy.Options(env="staging", images_file=path, extra_set=("backend.replicas=-3",))
    return deploy.make_plan(cfg, opts, {"USER": "alice"})


# ----------------------------------------------------------------------------- inputs


class FakeRegistry(Client):
    """Answers manifest HEADs from a set of digests that exist."""

    def __init__(self, present: set[str]) -> None:
        super().__init__("127.0.0.1:5000", insecure=True)
        self.present = present
        self.asked: list[tuple[str, str]] = []

    def digest(self, repo: str, ref: str) -> str | None:
        self.asked.append((repo, ref))
        return ref if ref in self.present else None


def test_a_digest_missing_from_its_registry_is_refused_naming_the_image(
    plan: deploy.Plan,
) -> None:
    registry = FakeRegistry(set())
    with pytest.raises(DeployError, match=r"^image backend 127\.0\.0\.1:5000/st/backend@sha256:2+"):
        inputs.check_digests(plan.images, lambda _host: registry)
    assert ("st/backend", DIGEST) in registry.asked


def test_digests_present_in_the_registry_pass(plan: deploy.Plan) -> None:
    registry = FakeRegistry({DIGEST})
    inputs.check_digests(plan.images, lambda _host: registry)
    assert len(registry.asked) == len(plan.images)


def test_a_refused_image_is_reported_before_an_input_problem(
    cfg: config.Config, plan: deploy.Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification and the input checks run side by side; the refusal still comes first."""
    from ci.deploy import step

    def bad_inputs(*_a: object, **_k: object) -> str:
        raise DeployError("image backend: digest not found in its registry")

    def refuse(_plan: deploy.Plan) -> list[Any]:
        raise DeployError("image backend: no provenance attestation")

    monkeypatch.setattr(inputs, "check", bad_inputs)
    fake = helm.Helm("helm", "v3.22.0")
    with pytest.raises(DeployError, match="no provenance"):
        step._checked(cfg, fake, plan, verify=refuse, client_for=None, validator=None)  # type: ignore[arg-type]
    with pytest.raises(DeployError, match="digest not found"):
        step._checked(cfg, fake, plan, verify=None, client_for=None, validator=None)  # type: ignore[arg-type]
    monkeypatch.setattr(inputs, "check", lambda *_a, **_k: "")
    marked = [i.name for i in plan.images][::-1]

    def verified(p: deploy.Plan) -> list[Any]:
        return list(reversed(p.images))

    checked = step._checked(cfg, fake, plan, verify=verified, client_for=None, validator=None)  # type: ignore[arg-type]
    assert [i.name for i in checked.images] == marked


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "Error: values don't meet the specifications of the schema(s) in the following "
            "chart(s):\nschedule-app:\n- at '/backend': additional properties 'replicas' "
            "not allowed\n",
            ("backend.replicas", "not a key the chart's values schema allows"),
        ),
        (
            "Error: values don't meet ...:\nschedule-app:\n"
            "- at '/backend/replicaCount': minimum: got -3, want 0\n",
            ("backend.replicaCount", "minimum: got -3, want 0"),
        ),
        ('Error: template: x.yaml:3: function "nope" not defined\n', None),
    ],
)
def test_schema_errors_name_the_key(stderr: str, expected: tuple[str, str] | None) -> None:
    assert inputs.schema_key(stderr) == expected


# ----------------------------------------------------------------------------- fail fast


def pod(*statuses: dict[str, Any], created: str = "2026-12-02T07:00:05Z") -> dict[str, Any]:
    return {
        "metadata": {"name": "backend-1", "creationTimestamp": created},
        "status": {"phase": "Pending", "containerStatuses": list(statuses)},
    }


def waiting(reason: str, message: str = "", restarts: int = 0) -> dict[str, Any]:
    return {
        "name": "app",
        "image": "127.0.0.1:5000/st/backend@" + DIGEST,
        "restartCount": restarts,
        "ready": False,
        "state": {"waiting": {"reason": reason, "message": message}},
        "lastState": {"terminated": {"exitCode": 1}},
    }


NOT_FOUND = (
    'rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:5000/st/'
    'backend@sha256:22": failed to resolve reference: not found'
)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (waiting("ErrImagePull", NOT_FOUND), "not found in its registry"),
        (waiting("ImagePullBackOff", f"Back-off pulling image: {NOT_FOUND}"), "not found"),
        (waiting("CreateContainerConfigError", 'secret "db" not found'), "CreateContainerConfig"),
        (waiting("InvalidImageName", "couldn't parse"), "invalid image name"),
        (waiting("CrashLoopBackOff", "back-off 40s", restarts=3), "after 3 restarts (last exit 1)"),
        # transient: keep waiting
        (waiting("ErrImagePull", "dial tcp 127.0.0.1:5000: i/o timeout"), None),
        (waiting("ImagePullBackOff", "Back-off pulling image: connection refused"), None),
        (waiting("CrashLoopBackOff", "back-off 10s", restarts=2), None),
        (waiting("ContainerCreating"), None),
        (waiting("PodInitializing"), None),
    ],
)
def test_fatal_pod_tells_final_failures_from_transient_ones(
    status: dict[str, Any], verdict: str | None
) -> None:
    found = kube.fatal_pod(pod(status), max_restarts=3)
    if verdict is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith("pod/backend-1 container app: ")
        assert verdict in found


def test_a_pending_pod_waiting_for_its_volume_is_not_final() -> None:
    p = pod()
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "message": "unbound PersistentVolumeClaims"}
    ]
    assert kube.fatal_pod(p, max_restarts=3) is None


def test_a_job_is_final_only_once_its_retries_are_used_up() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "migrate", "annotations": {"helm.sh/hook": "pre-upgrade"}},
        "status": {"failed": 1, "active": 1, "conditions": []},
    }
    assert kube.fatal_job(job) is None
    job["status"]["conditions"] = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    ]
    assert kube.fatal_job(job) == (
        "job/migrate (hook pre-upgrade) failed: BackoffLimitExceeded "
        "(Job has reached the specified backoff limit)"
    )


def test_only_what_this_deploy_made_is_judged() -> None:
    since = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
    assert kube.checks.created_since(pod(created="2026-12-02T07:00:05Z"), since)
    assert not kube.checks.created_since(pod(created="2026-12-01T23:00:00Z"), since)
    assert kube.checks.created_since(pod(), None)


def test_the_diagnosis_shows_only_events_since_the_deploy_started() -> None:
    since = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
    old = {"lastTimestamp": "2026-12-02T06:50:00Z"}
    new = {"lastTimestamp": "2026-12-02T07:00:30Z"}
    micro = {"eventTime": "2026-12-02T07:01:00.123456Z"}
    assert not kube.checks.event_since(old, since)
    assert kube.checks.event_since(new, since)
    assert kube.checks.event_since(micro, since)


# ----------------------------------------------------------------------------- lease


def lease_obj(holder: str | None, renewed: datetime, duration: int = 30) -> dict[str, Any]:
    me = lease.Holder(holder or "", "4711.1", "runner-7", "2026-12-02T06:59:00Z")
    obj = lease.body("ci-deploy-app", me, renewed)
    obj["spec"]["leaseDurationSeconds"] = duration
    if holder is None:
        obj["spec"]["holderIdentity"] = None
    return obj


def test_lease_states() -> None:
    assert lease.state(None, NOW) == lease.ABSENT
    assert lease.state(lease_obj(None, NOW), NOW) == lease.RELEASED
    assert lease.state(lease_obj("a", NOW - timedelta(seconds=10)), NOW) == lease.HELD
    assert lease.state(lease_obj("a", NOW - timedelta(seconds=31)), NOW) == lease.EXPIRED


def test_lease_names_its_holder_for_the_waiting_deploy() -> None:
    found = lease.holder(lease_obj("4711.1/runner-7/99", NOW))
    assert found.describe() == "run 4711.1 on runner-7 (since 2026-12-02T06:59:00Z)"
    assert lease.lease_name("schedule-app") == "ci-deploy-schedule-app"


def test_lease_body_is_a_valid_lease_with_micro_times() -> None:
    obj = lease_obj("x", NOW)
    assert obj["apiVersion"] == "coordination.k8s.io/v1"
    assert obj["spec"]["renewTime"] == "2026-12-02T07:00:00.000000Z"
    assert "resourceVersion" not in obj["metadata"]
    me = lease.Holder("x", "r", "h", "s")
    assert lease.body("n", me, NOW, "42")["metadata"]["resourceVersion"] == "42"


# ----------------------------------------------------------------------------- skip


DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "backend", "labels": {"app": "backend"}},
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "resources": {"limits": {"cpu": "1", "memory": "768Mi"}},
                        "env": [],
                        "securityContext": {"privileged": False},
                    }
                ]
            }
        },
    },
}


def live_copy(**spec: Any) -> dict[str, Any]:
    live: dict[str, Any] = json.loads(json.dumps(DEPLOYMENT))
    live["metadata"] |= {
        "namespace": "ns",
        "uid": "u",
        "annotations": {"deployment.kubernetes.io/revision": "7"},
    }
    live["spec"] |= {"strategy": {"type": "RollingUpdate"}, **spec}
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["cpu"] = "1000m"  # the API server's spelling
    del container["env"]
    del container["securityContext"]
    live["status"] = {"replicas": 1}
    return live


def test_no_drift_when_only_server_defaults_and_spellings_differ() -> None:
    key = ("Deployment", "ns", "backend")
    assert skip.drift({key: DEPLOYMENT}, {key: live_copy()}) == []


def test_a_scaled_deployment_is_drift() -> None:
    key = ("Deployment", "ns", "backend")
    assert skip.drift({key: DEPLOYMENT}, {key: live_copy(replicas=3)}) == [
        "Deployment/backend (ns): spec.replicas"
    ]


def test_a_deleted_object_is_drift() -> None:
    key = ("Deployment", "ns", "backend")
    assert skip.drift({key: DEPLOYMENT}, {}) == ["Deployment/backend (ns): missing"]


def test_only_the_releases_own_workloads_and_claims_decide_its_health() -> None:
    """A hook's backup claim waits for its first consumer; another release is not this one."""
    release: dict[tuple[str, str, str], Any] = {
        ("Deployment", "ns", "app-backend"): {},
        ("PersistentVolumeClaim", "ns", "app-uploads"): {},
    }
    status = [
        ("deployment/app-backend 1/2 ready", False),
        ("deployment/other-web 0/1 ready", False),
        ("pvc/app-backup Pending", False),
        ("pvc/app-uploads Pending", False),
        ("job/app-migration (hook pre-upgrade): running", False),
        ("statefulset/app-db 1/1 ready", True),
    ]
    assert skip.unready(status, release) == [
        "deployment/app-backend 1/2 ready",
        "pvc/app-uploads Pending",
    ]
    assert skip.unready([("deployment/app-backend 2/2 ready", True)], release) == []


def test_index_live_keys_objects_like_the_manifest() -> None:
    items = [live_copy()]
    assert list(skip.index_live(items, "other")) == [("Deployment", "ns", "backend")]


@pytest.mark.parametrize(
    ("kw", "upgrade", "reason"),
    [
        ({"force": True}, True, "--force"),
        ({"status": None}, True, "no release yet"),
        ({"status": "failed"}, True, "the release is failed"),
        ({"changes": 2}, True, "2 object(s) differ from the live release"),
        ({"not_ready": ["deployment/backend 0/1 ready"]}, True, "not healthy: deployment/"),
        ({"drifted": ["Deployment/b (ns): spec.replicas"]}, True, "drift repaired: Deploy"),
        ({}, False, "unchanged: manifests equal the live release"),
    ],
)
def test_decide(kw: dict[str, Any], upgrade: bool, reason: str) -> None:
    args: dict[str, Any] = {
        "force": False,
        "status": "deployed",
        "changes": 0,
        "not_ready": [],
        "drifted": [],
    }
    decision = skip.decide(**(args | kw))
    assert decision.upgrade is upgrade
    assert decision.reason.startswith(reason)


# ----------------------------------------------------------------------------- step outcomes


def test_each_step_says_whether_it_did_work_was_cached_or_skipped(tmp_path: Path) -> None:
    from ci import pipeline

    started = datetime.now(UTC) - timedelta(seconds=5)
    (tmp_path / "images.json").write_text(
        json.dumps(
            {"images": [{"name": "a", "status": "cached"}, {"name": "b", "status": "cached"}]}
        )
    )
    (tmp_path / "release.json").write_text(
        json.dumps({"deploy": {"action": "skipped", "reason": "unchanged: manifests equal"}})
    )
    (tmp_path / "findings.json").write_text(json.dumps({"ok": True, "findings": []}))
    assert pipeline.step_outcome("images", tmp_path, started) == (
        "cached",
        "2 image(s) unchanged since their last push",
    )
    assert pipeline.step_outcome("deploy", tmp_path, started) == (
        "skipped",
        "unchanged: manifests equal",
    )
    assert pipeline.step_outcome("chart", tmp_path, started) == ("ran", "")
    # an artifact older than the step was left by an earlier run: it says nothing
    later = datetime.now(UTC) + timedelta(seconds=60)
    assert pipeline.step_outcome("deploy", tmp_path, later) == ("ran", "")
    (tmp_path / "images.json").write_text(
        json.dumps(
            {"images": [{"name": "a", "status": "built"}, {"name": "b", "status": "cached"}]}
        )
    )
    assert pipeline.step_outcome("images", tmp_path, started) == ("ran", "built a")


# ----------------------------------------------------------------------------- chart check cache


def test_the_chart_check_key_changes_with_values_kubernetes_version_and_helm(
    cfg: config.Config, tmp_path: Path
) -> None:
    from dataclasses import replace

    from ci import chart

    h = helm.Helm("/bin/helm", "v3.22.0")
    env = cfg.environments["staging"]
    values = tmp_path / "values.yaml"
    values.write_text("backend: {replicaCount: 1}\n")
    mine = replace(env, values=(values,))
    key = chart.check_key(cfg, h, [mine])
    assert chart.check_key(cfg, h, [mine]) == key
    values.write_text("backend: {replicaCount: 2}\n")
    assert chart.check_key(cfg, h, [mine]) != key
    newer = replace(cfg, chart=replace(cfg.chart, kubernetes_version="1.31.0"))
    assert chart.check_key(newer, h, [mine]) != chart.check_key(cfg, h, [mine])
    assert chart.check_key(cfg, helm.Helm("/bin/helm", "v4.3.1"), [mine]) != chart.check_key(
        cfg, h, [mine]
    )


def test_a_cached_chart_check_is_reused_only_for_the_same_key(tmp_path: Path) -> None:
    from ci import chart

    cache = tmp_path / "chart-check.cache.json"
    finding = {"rule": "POL001", "message": "m", "file": "f", "line": 3, "env": "staging"}
    cache.write_text(
        json.dumps({"key": "k1", "report": {"findings": [finding], "checked": {"staging": 5}}})
    )
    env = config.load(ROOT / "ci.yaml").environments["staging"]
    report = chart._cached(cache, "k1", None, [env])
    assert report is not None
    assert report.checked == {"staging": 5}
    assert report.findings[0].line == 3
    assert chart._cached(cache, "k2", None, [env]) is None
    assert chart._cached(cache, "k1", tmp_path / "rendered", [env]) is None  # rendering gone


def test_server_side_apply_on_helm_4_always_forces_its_conflicts(plan: deploy.Plan) -> None:
    """A field another manager took (kubectl scale) would otherwise fail every later upgrade
    and the rollback of a failed one, drift or not."""
    h4 = helm.Helm("/bin/helm4", "v4.3.1")
    h3 = helm.Helm("/bin/helm3", "v3.22.0")
    argv = deploy.upgrade_argv(h4, plan, kubeconfig=None, server_side=None)
    assert "--force-conflicts" in argv
    assert "--server-side=true" in argv
    plain = deploy.upgrade_argv(h4, plan, kubeconfig=None, server_side=None)
    assert "--force-conflicts" in plain
    client = deploy.upgrade_argv(h4, plan, kubeconfig=None, server_side=False)
    assert "--force-conflicts" not in client
    helm3 = deploy.upgrade_argv(h3, plan, kubeconfig=None, server_side=None)
    assert "--force-conflicts" not in helm3  # client-side apply overwrites anyway
