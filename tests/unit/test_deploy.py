"""Deploy logic without a cluster: plan checks, Helm argv, pending releases, diffs, pod states."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ci import config, deploy, helm, kube, presenter, release
from ci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
H3 = helm.Helm("/bin/helm3", "v3.19.0")
H4 = helm.Helm("/bin/helm4", "v4.1.0")
DIGEST = "sha256:" + "1" * 64


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(ROOT / "ci.yaml")


@pytest.fixture
def images_file(tmp_path: Path, cfg: config.Config) -> Path:
    items = [
        {
            "name": i.name,
            "repository": f"127.0.0.1:5000/st/{i.name}",
            "digest": DIGEST,
            "values_key": i.values_key,
            "ref": f"127.0.0.1:5000/st/{i.name}@{DIGEST}",
        }
        for i in cfg.images
    ]
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"git": {"sha": "abc123" * 6}, "images": items}))
    return path


def plan_for(cfg: config.Config, images_file: Path, **over: Any) -> deploy.Plan:
    opts = deploy.Options(env="staging", images_file=images_file, **over)
    return deploy.make_plan(cfg, opts, {"GITHUB_ACTOR": "alice", "GITHUB_EVENT_NAME": "push"})


# ----------------------------------------------------------------------------- plan


def test_plan_sets_digests_and_deploy_info(cfg: config.Config, images_file: Path) -> None:
    plan = plan_for(cfg, images_file)
    assert plan.set_values["backend.image.repository"] == "127.0.0.1:5000/st/backend"
    assert plan.set_values["backend.image.digest"] == DIGEST
    assert plan.set_values["deployInfo.gitSha"] == "abc123" * 6
    assert plan.set_values["deployInfo.triggeredBy"] == "alice (push)"
    assert plan.values == cfg.environments["staging"].values
    assert "by alice (push)" in plan.description
    assert "backend@111111111111" in plan.description


@pytest.mark.parametrize("pair", ["novalue", "=value"])
def test_plan_refuses_an_extra_set_that_is_not_key_value(
    cfg: config.Config, images_file: Path, pair: str
) -> None:
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        plan_for(cfg, images_file, extra_set=("a.b=1", pair))


def test_unknown_environment_is_one_line(cfg: config.Config, images_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment 'qa'") as exc:
        deploy.make_plan(cfg, deploy.Options(env="qa", images_file=images_file))
    assert exc.value.exit_code == 2


def test_missing_values_file(cfg: config.Config, images_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"values file .*nope.yaml not found"):
        plan_for(cfg, images_file, extra_values=(tmp_path / "nope.yaml",))


def test_missing_digest_file_names_the_command(cfg: config.Config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"images.json not found .*ci images build --push"):
        plan_for(cfg, tmp_path / "images.json")


def test_digest_file_must_cover_every_image(cfg: config.Config, images_file: Path) -> None:
    data = json.loads(images_file.read_text())
    data["images"] = data["images"][:1]
    images_file.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="no digest for image"):
        plan_for(cfg, images_file)


def test_approval_env_needs_a_release_manifest(cfg: config.Config, images_file: Path) -> None:
    opts = deploy.Options(env="prod", images_file=images_file)
    with pytest.raises(ConfigError, match=r"needs approval: .*--release-manifest"):
        deploy.make_plan(cfg, opts)


def test_approval_env_diff_only_uses_images(cfg: config.Config, images_file: Path) -> None:
    opts = deploy.Options(env="prod", images_file=images_file, diff_only=True)
    assert deploy.make_plan(cfg, opts).source == str(images_file)


def manifest(tmp_path: Path, cfg: config.Config, **over: Any) -> Path:
    _, version = release.chart_meta(cfg.chart.path)
    rec = release.ReleaseRecord(
        env="staging",
        namespace="schedule-staging",
        release="schedule-app",
        revision=5,
        previous_revision=4,
        git_sha="feed" * 10,
        images=[
            release.ImageRef(i.name, f"reg/{i.name}", "sha256:" + "9" * 64, i.values_key)
            for i in cfg.images
        ],
        chart_name="schedule-app",
        chart_version=version,
        triggered_by="ci",
        time="",
        run_id="1.1",
        smoke={"result": "passed"},
    )
    for key, value in over.items():
        setattr(rec, key, value)
    return release.write_release(rec, tmp_path / "staging")


def test_prod_deploys_exactly_the_manifest(cfg: config.Config, tmp_path: Path) -> None:
    path = manifest(tmp_path, cfg)
    opts = deploy.Options(env="prod", images_file=tmp_path / "absent.json", release_manifest=path)
    plan = deploy.make_plan(cfg, opts)
    assert plan.git_sha == "feed" * 10
    assert {i.digest for i in plan.images} == {"sha256:" + "9" * 64}
    assert plan.set_values["frontend.image.repository"] == "reg/frontend"


def test_prod_refuses_failed_smoke(cfg: config.Config, tmp_path: Path) -> None:
    path = manifest(tmp_path, cfg, smoke={"result": "failed"})
    opts = deploy.Options(env="prod", images_file=tmp_path / "x", release_manifest=path)
    with pytest.raises(ConfigError, match="smoke result 'failed'"):
        deploy.make_plan(cfg, opts)


def test_prod_refuses_other_chart_version(cfg: config.Config, tmp_path: Path) -> None:
    path = manifest(tmp_path, cfg, chart_version="9.9.9")
    opts = deploy.Options(env="prod", images_file=tmp_path / "x", release_manifest=path)
    with pytest.raises(ConfigError, match=r"chart version 9\.9\.9"):
        deploy.make_plan(cfg, opts)


# ----------------------------------------------------------------------------- argv


def test_escape_set() -> None:
    assert helm.escape_set(r"a,b\c") == r"a\,b\\c"


def flag_values(argv: tuple[str, ...], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize("sha", ["1234567", "5e12345", "0123456"])
def test_recorded_values_stay_strings_whatever_they_look_like(
    cfg: config.Config, images_file: Path, sha: str
) -> None:
    """A commit of digits only is a number to ``--set`` and fails the chart's schema."""
    data = json.loads(images_file.read_text())
    images_file.write_text(json.dumps({**data, "git": {"sha": sha}}))
    argv = deploy.upgrade_argv(H3, plan_for(cfg, images_file), kubeconfig=None, server_side=None)
    strings = flag_values(argv, "--set-string")
    assert f"deployInfo.gitSha={sha}" in strings
    assert f"backend.image.digest={DIGEST}" in strings
    assert not [s for s in flag_values(argv, "--set") if s.startswith("deployInfo.")]


def test_an_extra_set_of_a_recorded_key_wins(cfg: config.Config, images_file: Path) -> None:
    """Helm applies ``--set-string`` after ``--set``: the recorded pair is left out instead."""
    other = "sha256:" + "2" * 64
    plan = plan_for(cfg, images_file, extra_set=(f"a=1,backend.image.digest={other}",))
    argv = deploy.upgrade_argv(H3, plan, kubeconfig=None, server_side=None)
    assert not [s for s in flag_values(argv, "--set-string") if "backend.image.digest" in s]
    assert flag_values(argv, "--set") == [f"a=1,backend.image.digest={other}"]
    assert f"frontend.image.digest={DIGEST}" in flag_values(argv, "--set-string")


def test_an_escaped_comma_does_not_split_a_pair(cfg: config.Config, images_file: Path) -> None:
    plan = plan_for(cfg, images_file, extra_set=(r"a=x\,y",))
    assert deploy.set_args(plan) == [r"a=x\,y"]


def test_helm3_argv(cfg: config.Config, images_file: Path) -> None:
    plan = plan_for(cfg, images_file, extra_set=("x.y=1",))
    argv = deploy.upgrade_argv(H3, plan, kubeconfig="/k", server_side=None)
    assert argv[:5] == ("/bin/helm3", "upgrade", "schedule-app", str(cfg.chart.path), "--install")
    for flag in ("--wait", "--wait-for-jobs", "--atomic"):
        assert flag in argv
    assert "--rollback-on-failure" not in argv
    assert not any(a.startswith("--server-side") for a in argv)
    assert argv[argv.index("--namespace") + 1] == "schedule-staging"
    assert argv[argv.index("--kubeconfig") + 1] == "/k"
    assert argv[argv.index("--timeout") + 1] == "600s"
    assert f"backend.image.digest={DIGEST}" in flag_values(argv, "--set-string")
    assert flag_values(argv, "--set") == ["x.y=1"]
    assert argv[argv.index("--description") + 1] == plan.description


def test_helm4_argv_is_explicitly_server_side(cfg: config.Config, images_file: Path) -> None:
    plan = plan_for(cfg, images_file)
    argv = deploy.upgrade_argv(H4, plan, kubeconfig=None, server_side=None)
    assert "--server-side=true" in argv
    assert "--rollback-on-failure" in argv
    assert "--wait=watcher" in argv
    assert "--atomic" not in argv
    client = deploy.upgrade_argv(H4, plan, kubeconfig=None, server_side=False)
    assert "--server-side=false" in client


# ----------------------------------------------------------------------------- recovery

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def entry(rev: int, status: str, age: float = 3600) -> dict[str, Any]:
    when = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return {"revision": rev, "status": status, "updated": when, "description": ""}


def decide(history: list[dict[str, Any]]) -> deploy.Recovery:
    return deploy.decide_recovery(history, now=NOW, stale_after=720, release_name="app")


def test_no_history_needs_nothing() -> None:
    assert decide([]).action == "none"
    assert decide([entry(1, "superseded"), entry(2, "deployed")]).action == "none"


def test_stale_pending_upgrade_rolls_back_to_last_deployed() -> None:
    rec = decide([entry(1, "superseded"), entry(2, "deployed"), entry(3, "pending-upgrade")])
    assert (rec.action, rec.revision) == ("rollback", 2)
    assert "interrupted" in rec.message


def test_stale_pending_install_is_uninstalled() -> None:
    rec = decide([entry(1, "pending-install")])
    assert rec.action == "uninstall"


def test_young_pending_release_is_a_live_lock() -> None:
    rec = decide([entry(1, "deployed"), entry(2, "pending-upgrade", age=30)])
    assert rec.action == "refuse"
    assert "in progress" in rec.message


def test_only_failed_revisions_are_uninstalled() -> None:
    assert decide([entry(1, "failed")]).action == "uninstall"
    assert decide([entry(1, "deployed"), entry(2, "failed")]).action == "none"


def test_previous_good() -> None:
    assert deploy.previous_good([entry(1, "superseded"), entry(2, "deployed")]) == 2
    assert deploy.previous_good([entry(1, "superseded"), entry(2, "failed")]) == 1
    assert deploy.previous_good([entry(1, "failed")]) is None


@pytest.mark.parametrize(
    "text",
    ["2030-01-01T11:00:00.123456789Z", "2030-01-01T13:00:00+02:00", "2030-01-01 11:00:00 +0000"],
)
def test_parse_time(text: str) -> None:
    parsed = deploy.parse_time(text)
    assert parsed is not None
    assert parsed.astimezone(UTC).replace(microsecond=0) == NOW - timedelta(hours=1)


def test_rolled_back_reads_helm_history() -> None:
    hist = [entry(1, "superseded"), entry(2, "failed"), entry(3, "deployed")]
    hist[2]["description"] = "Rollback to 1"
    assert deploy.rolled_back(hist) == " and was rolled back (revision 3: Rollback to 1)"
    assert deploy.rolled_back(hist[:2]) == ""


# ----------------------------------------------------------------------------- diff

LIVE = """
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: ns}
data: {password: b2xk, user: dXNlcg==}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {LEVEL: INFO}
---
apiVersion: v1
kind: Service
metadata: {name: gone}
"""

NEW = """
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: ns}
data: {password: bmV3, user: dXNlcg==}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: ns}
data: {LEVEL: DEBUG}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {helm.sh/hook: pre-upgrade}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
"""


def test_diff_object_by_object_with_secrets_redacted() -> None:
    result = deploy.diff_manifests(LIVE, NEW, "ns")
    changes = {(c.kind, c.name): c for c in result.changes}
    assert set(changes) == {
        ("ConfigMap", "cfg"),
        ("Secret", "db"),
        ("Service", "gone"),
        ("Deployment", "web"),
    }
    assert changes["Service", "gone"].change == "removed"
    assert changes["Deployment", "web"].change == "added"
    assert "-  LEVEL: INFO" in changes["ConfigMap", "cfg"].diff
    assert "+  LEVEL: DEBUG" in changes["ConfigMap", "cfg"].diff
    secret = changes["Secret", "db"].diff
    for raw in ("b2xk", "bmV3", "dXNlcg=="):
        assert raw not in result.text()
        assert raw not in presenter.diff_markdown(result, "staging")
    assert "+  password: (redacted) changed" in secret
    assert "-  password: (redacted)\n" in secret
    assert "\n   user: (redacted)\n" in secret  # unchanged: a context line, not + or -
    assert result.unchanged == 0
    assert "1 added, 2 changed, 1 removed" in result.summary_line()


def test_diff_of_identical_manifests_is_empty() -> None:
    result = deploy.diff_manifests(NEW, NEW, "ns")
    assert result.changes == []
    assert result.unchanged == 4 - 1  # the hook Job is not part of a release manifest


# ----------------------------------------------------------------------------- kube logic


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}, "status": status}


def test_pod_problem_reports_crash_loop_and_pull_errors() -> None:
    crash = pod(
        phase="Running",
        containerStatuses=[
            {
                "name": "app",
                "restartCount": 3,
                "ready": False,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            }
        ],
    )
    assert kube.pod_problem(crash) == "app: CrashLoopBackOff (back-off)"
    pull = pod(
        containerStatuses=[
            {"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}
        ]
    )
    assert kube.pod_problem(pull) == "app: ErrImagePull"


def test_pod_problem_quiet_for_starting_and_healthy_pods() -> None:
    starting = pod(
        containerStatuses=[
            {
                "name": "app",
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
        ]
    )
    assert kube.pod_problem(starting) is None
    healthy = pod(
        phase="Running",
        containerStatuses=[{"name": "app", "restartCount": 0, "ready": True, "state": {}}],
    )
    assert kube.pod_problem(healthy) is None


def test_pod_problem_unschedulable_and_failed_init() -> None:
    unsched = pod(conditions=[{"type": "PodScheduled", "status": "False", "message": "0/1 nodes"}])
    assert kube.pod_problem(unsched) == "unschedulable: 0/1 nodes"
    init = pod(
        initContainerStatuses=[
            {"name": "wait", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
        ]
    )
    assert kube.pod_problem(init) == "wait: exited 1 (Error)"


def test_a_settled_workload_has_finished_its_rollout_with_a_replica_ready() -> None:
    """An autoscaler's scale-up (new pods of the current template starting) is settled; a
    rollout that still runs pods of the older template, or no ready replica, is not."""

    def settled(want: int, **status: int) -> bool:
        dep = {"metadata": {"name": "b"}, "spec": {"replicas": want}, "status": status}
        return kube.workload_line("Deployment", dep, settled=True)[1]

    assert settled(2, replicas=2, updatedReplicas=2, readyReplicas=1)  # scaling up
    assert not settled(2, replicas=3, updatedReplicas=2, readyReplicas=2)  # an old pod left
    assert not settled(2, replicas=2, updatedReplicas=1, readyReplicas=2)  # rolling out
    assert not settled(2, replicas=2, updatedReplicas=2, readyReplicas=0)  # nothing ready
    assert settled(0)
    dep = {"metadata": {"name": "b"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert kube.workload_line("Deployment", dep, settled=True)[0] == (
        "deployment/b 1/2 ready, 0/2 updated"
    )


def test_workload_and_job_lines() -> None:
    dep = {"metadata": {"name": "b"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    assert kube.workload_line("Deployment", dep) == ("deployment/b 1/2 ready, 0/2 updated", False)
    dep["status"] = {"readyReplicas": 2, "updatedReplicas": 2}
    assert kube.workload_line("Deployment", dep)[1] is True
    job = {
        "metadata": {"name": "m", "annotations": {"helm.sh/hook": "pre-install,pre-upgrade"}},
        "status": {"active": 1},
    }
    assert kube.job_line(job) == ("job/m (hook pre-install,pre-upgrade): running", False)
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert kube.job_line(job)[0].endswith("succeeded")


def test_event_line() -> None:
    ev = {
        "type": "Warning",
        "reason": "BackOff",
        "involvedObject": {"kind": "Pod", "name": "b-1"},
        "message": "Back-off restarting\n failed container",
        "count": 4,
    }
    assert (
        kube.event_line(ev) == "Warning BackOff pod/b-1: Back-off restarting failed container (x4)"
    )


def test_access_writes_kubeconfig_content_to_private_file(cfg: config.Config) -> None:
    env = replace(cfg.environments["staging"], kubeconfig_env="KC_TEST")
    content = "apiVersion: v1\nkind: Config\nclusters: []\n"
    with kube.access(env, {"KC_TEST": content}) as acc:
        assert acc.kubeconfig is not None
        path = Path(acc.kubeconfig)
        assert path.read_text() == content
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not path.exists()


def test_access_accepts_a_path_and_falls_back(cfg: config.Config, tmp_path: Path) -> None:
    env = replace(cfg.environments["staging"], kubeconfig_env="KC_TEST")
    file = tmp_path / "kc"
    file.write_text("x")
    with kube.access(env, {"KC_TEST": str(file)}) as acc:
        assert acc.kubeconfig == str(file)
    with kube.access(env, {"KUBECONFIG": "/some/kc"}) as acc:
        assert acc.kubeconfig == "/some/kc"


def test_repeated_warning_events_are_shown_when_their_count_doubles() -> None:
    shown: dict[str, int] = {}
    ev: dict[str, Any] = {"metadata": {"uid": "u1"}, "type": "Warning", "count": 1}
    seen = []
    for count in range(1, 10):
        ev["count"] = count
        seen.append(kube.worth_showing(ev, shown))
    assert [c for c, s in zip(range(1, 10), seen, strict=True) if s] == [1, 2, 4, 8]
    assert kube.worth_showing({"metadata": {"uid": "u2"}, "count": 5}, shown)


def test_pvc_line() -> None:
    claim: dict[str, Any] = {"metadata": {"name": "backup"}, "status": {"phase": "Pending"}}
    assert kube.pvc_line(claim) == ("pvc/backup Pending", False)
    claim["status"]["phase"] = "Bound"
    assert kube.pvc_line(claim) == ("pvc/backup Bound", True)
