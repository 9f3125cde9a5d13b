"""``ci deploy`` and ``ci smoke`` against the local cluster with the reference app.

The tests run in file order and build on each other (one release, upgraded step by step):
bad input first (nothing may exist afterwards), then install, smoke, a no-change upgrade,
data across a PostgreSQL restart, a broken upgrade rolled back, backup and restore.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ci import proc

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e

# The same names as the ``e2e`` fixture's (conftest.py).
NAMESPACE = "schedule-e2e"
RELEASE = "schedule-app"
HOST = "schedule-e2e.local"
PG = f"{RELEASE}-postgresql"
BACKUP_CLAIM = f"{RELEASE}-backup"
#: The label the chart's NetworkPolicies admit to the databases.
RELEASE_POD = {"app.kubernetes.io/instance": RELEASE}


def one_line_error(res: proc.Result) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def namespace_exists(e2e: E2E) -> bool:
    res = e2e.kubectl("get", "namespace", NAMESPACE, check=False)
    return res.returncode == 0


def api(e2e: E2E, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request through the ingress, as a browser would send it."""
    data = None if body is None else json.dumps(body).encode()
    url = f"{e2e.info.ingress_url}{path}"
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Host", HOST)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return 0, str(exc)  # not answering (yet): callers that wait retry


def psql(e2e: E2E, sql: str, db: str = "schedule") -> str:
    """Run ``sql`` as the admin user: the application's user may not create databases."""
    res = e2e.kubectl(
        "exec", "-n", NAMESPACE, f"{PG}-0", "--", "psql", "-U", "postgres", "-d", db, "-At",
        "-c", sql,
    )  # fmt: skip
    return res.stdout.strip()


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_stop_before_anything_changes(
    e2e: E2E, images_json: Path, tmp_path: Path
) -> None:
    res = e2e.ci("deploy", "--env", "nope")
    assert res.returncode == 2
    assert "unknown environment 'nope'" in one_line_error(res)

    res = e2e.ci("deploy", "--env", "e2e", "--values", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2
    assert "missing.yaml not found" in one_line_error(res)

    res = e2e.ci("deploy", "--env", "e2e", "--images", str(tmp_path / "images.json"))
    assert res.returncode == 2
    assert "images.json not found" in one_line_error(res)
    assert "ci images build --push" in one_line_error(res)

    # digests that are in the registry: the registry is asked first, then the cluster
    digests = images_json
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    env = {**e2e.env, "KUBECONFIG_E2E": unreachable.read_text()}
    started = time.monotonic()
    res = e2e.ci("deploy", "--env", "e2e", "--images", str(digests), timeout=120, env=env)
    assert res.returncode == 3, res.stderr
    assert "cluster unreachable" in one_line_error(res)
    assert time.monotonic() - started < 60
    assert not namespace_exists(e2e)


# ----------------------------------------------------------------------------- install


def test_install_by_digest_with_migration_hook(e2e: E2E, images_json: Path) -> None:
    res = e2e.ci("deploy", "--env", "e2e")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"namespace {NAMESPACE}: created" in res.stdout
    hook_lines = [ln for ln in res.stdout.splitlines() if "-migration (hook" in ln]
    assert any(ln.endswith("succeeded") for ln in hook_lines), res.stdout

    record = json.loads((e2e.out / "release.json").read_text())
    images = json.loads(images_json.read_text())["images"]
    assert record["revision"] == 1
    assert record["previous_revision"] is None
    assert record["smoke"] == {"result": "pending"}
    assert {n: i["digest"] for n, i in record["images"].items()} == {
        i["name"]: i["digest"] for i in images
    }

    ns = e2e.kjson("get", "namespace", NAMESPACE)
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"

    backend = e2e.kjson("get", "deployment", f"{RELEASE}-backend", "-n", NAMESPACE)
    container = backend["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == record["images"]["backend"]["ref"]
    notes = backend["spec"]["template"]["metadata"].get("annotations", {})
    assert notes.get("deploy.gitSha") == record["git_sha"]

    jobs = e2e.kjson("get", "jobs", "-n", NAMESPACE)["items"]
    hooks = [j for j in jobs if "helm.sh/hook" in j["metadata"].get("annotations", {})]
    assert hooks == [], "a completed hook Job was left behind"
    assert psql(e2e, "select count(*) from flyway_schema_history where success") != "0"


def test_smoke_passes_and_is_recorded(e2e: E2E) -> None:
    res = e2e.ci("smoke", "--env", "e2e", *e2e.smoke_args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    smoke = json.loads((e2e.out / "smoke.json").read_text())
    assert smoke["result"] == "passed"
    assert {c["name"] for c in smoke["checks"]} >= {"frontend", "backend-health", "helm-test"}
    record = json.loads((e2e.out / "release.json").read_text())
    assert record["smoke"]["result"] == "passed"


def test_every_service_port_is_served(e2e: E2E) -> None:
    """Each port a Service declares answers through the Service name (amqp and management)."""
    mq = f"{RELEASE}-rabbitmq"
    service = e2e.kjson("get", "service", mq, "-n", NAMESPACE)
    for port in service["spec"]["ports"]:
        probe = f"exec 3<>/dev/tcp/{mq}.{NAMESPACE}.svc/{port['port']}"
        res = e2e.kubectl(
            "exec", "-n", NAMESPACE, f"{mq}-0", "--", "bash", "-c", probe, check=False
        )
        assert res.returncode == 0, f"{mq} port {port['name']}: {res.stderr}"


def probe_postgres(e2e: E2E, image: str, namespace: str, labels: dict[str, str]) -> str:
    """``reached`` or ``refused``: a TCP connect to PostgreSQL from a pod with ``labels``."""
    target = f"{PG}.{NAMESPACE}.svc/5432"
    connect = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{target}'"
    script = f"if {connect}; then echo reached; else echo refused; fi"
    pod = {
        "apiVersion": "v1",
        "metadata": {"labels": labels},
        "spec": restricted_pod_spec("probe", image, script),
    }
    res = e2e.kubectl(
        "run", "probe", "-n", namespace, "--rm", "-i", "--quiet", "--restart=Never",
        f"--image={image}", f"--overrides={json.dumps(pod)}", timeout=180,
    )  # fmt: skip
    return res.stdout.strip()


def test_network_policies_keep_the_database_to_the_release(e2e: E2E, images_json: Path) -> None:
    """The chart's NetworkPolicies, enforced: PostgreSQL answers the release's pods only."""
    dbtools = next(
        i for i in json.loads(images_json.read_text())["images"] if i["name"] == "dbtools"
    )
    assert probe_postgres(e2e, dbtools["ref"], NAMESPACE, RELEASE_POD) == "reached"
    assert probe_postgres(e2e, dbtools["ref"], NAMESPACE, {"app": "stranger"}) == "refused"


def test_second_deploy_without_changes_skips_and_force_upgrades_cleanly(e2e: E2E) -> None:
    res = e2e.ci("deploy", "--env", "e2e")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    record = json.loads((e2e.out / "release.json").read_text())
    assert record["deploy"]["action"] == "skipped", record["deploy"]
    assert record["revision"] == 1
    assert len(e2e.helm_history()) == 1, "a no-change deploy made a revision"

    res = e2e.ci("deploy", "--env", "e2e", "--force")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    record = json.loads((e2e.out / "release.json").read_text())
    assert record["deploy"] == {"action": "upgraded", "reason": "--force"}
    assert (record["revision"], record["previous_revision"]) == (2, 1)
    assert f"namespace {NAMESPACE}: unchanged" in res.stdout


def test_diff_only_changes_nothing(e2e: E2E) -> None:
    before = e2e.helm_history()
    res = e2e.ci("deploy", "--env", "e2e", "--diff-only", "--set", "frontend.replicaCount=2")
    assert res.returncode == 0, res.stderr
    assert "diff against revision 2" in res.stdout
    assert "Deployment/schedule-app-frontend" in res.stdout
    assert "+  replicas: 2" in res.stdout
    assert e2e.helm_history() == before


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (helm runs in its own session, so a group kill misses it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_interrupted_deploy_leaves_pending_release_that_is_recovered(e2e: E2E) -> None:
    argv = (
        sys.executable, "-m", "ci", "-c", str(e2e.config), "-o", str(e2e.out),
        "deploy", "--env", "e2e", "--set", "frontend.podAnnotations.interrupted=yes",
    )  # fmt: skip
    run = subprocess.Popen(
        argv,
        env={**os.environ, **e2e.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while e2e.helm_history()[-1]["status"] != "pending-upgrade":
        assert run.poll() is None, "the deploy ended before it could be interrupted"
        assert time.monotonic() < deadline, "no pending-upgrade revision appeared"
        time.sleep(0.5)
    for pid in [*descendants(run.pid), run.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait(timeout=30)
    pending = e2e.helm_history()[-1]
    assert pending["status"] == "pending-upgrade"

    # the killed deploy's Lease expires unrenewed: its pending release is known to be
    # abandoned and is recovered without --recover-pending
    res = e2e.ci("deploy", "--env", "e2e")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert f"revision {pending['revision']} was left pending-upgrade" in res.stdout
    history = e2e.helm_history()
    assert history[-1]["status"] == "deployed"
    after = [h for h in history if h["revision"] > pending["revision"]]
    assert after[0]["description"].startswith("Rollback to")  # then the new upgrade


# ----------------------------------------------------------------------------- data


def test_data_survives_postgres_restart(e2e: E2E) -> None:
    status, created = api(
        e2e, "POST", "/api/schedules", {"title": "kept", "startsAt": "2031-01-01T09:00:00Z"}
    )
    assert status == 201, created
    e2e.kubectl("delete", "pod", "-n", NAMESPACE, f"{PG}-0", "--wait", timeout=180)
    e2e.kubectl(
        "rollout", "status", f"statefulset/{PG}", "-n", NAMESPACE, "--timeout=300s", timeout=320
    )
    deadline = time.monotonic() + 180
    while True:
        status, read = api(e2e, "GET", f"/api/schedules/{created['id']}")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert status == 200, read
    assert read["title"] == "kept"
    (e2e.out / "kept-id").write_text(str(created["id"]))


def test_broken_backend_upgrade_is_rolled_back(e2e: E2E, images_json: Path) -> None:
    """The frontend image as backend: it never becomes ready there (NGINX without its
    writable folders exits, and restarts), so the upgrade fails and is rolled back.

    The migration hook (which runs the backend image too) is off for this upgrade, so what
    fails is the Deployment: either the crash loop stops Helm early (fail fast) or Helm's
    wait times out, and the release goes back to the revision before.
    """
    frontend = next(
        i for i in json.loads(images_json.read_text())["images"] if i["name"] == "frontend"
    )
    res = e2e.ci(
        "deploy",
        "--env",
        "e2e-short",
        "--set",
        f"backend.image.repository={frontend['repository']}",
        "--set",
        f"backend.image.digest={frontend['digest']}",
        "--set",
        "migration.enabled=false",
        "--set",
        "postgresql.metrics.enabled=false",  # its role comes from the migration Job
    )
    assert res.returncode == 1, res.stdout[-2000:]
    error = one_line_error(res)
    assert "rolled back" in error, error
    # the Deployment's pods, not a hook
    assert any(w in error for w in ("CrashLoopBackOff", "deadline exceeded", "timed out")), error
    assert "pod/schedule-app-backend" in res.stderr
    assert "release history:" in res.stderr
    history = e2e.helm_history()
    assert history[-1]["status"] == "deployed"
    assert history[-1]["description"].startswith("Rollback to")
    assert history[-2]["status"] == "failed"

    res = e2e.ci("smoke", "--env", "e2e", *e2e.smoke_args)
    assert res.returncode == 0, res.stdout[-3000:]
    kept = (e2e.out / "kept-id").read_text()
    status, read = api(e2e, "GET", f"/api/schedules/{kept}")
    assert status == 200
    assert read["title"] == "kept"


# ----------------------------------------------------------------------------- backup


def test_backup_job_writes_a_dump_that_restores(e2e: E2E, images_json: Path) -> None:
    """Backups on with the chart's own volume: the deploy does not wait for a claim that binds
    only when the first backup Job mounts it, a second upgrade leaves it alone, and a dump
    written by the CronJob's Job restores to the same rows."""
    for _ in range(2):
        res = e2e.ci("deploy", "--env", "e2e", "--set", "backup.enabled=true")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    claim = json.loads(
        e2e.kubectl("get", "pvc", BACKUP_CLAIM, "-n", NAMESPACE, "-o", "json").stdout
    )
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    status, created = api(
        e2e, "POST", "/api/schedules", {"title": "backed up", "startsAt": "2031-02-01T09:00:00Z"}
    )
    assert status == 201, created
    job = "backup-e2e"
    e2e.kubectl("delete", "job", job, "-n", NAMESPACE, "--ignore-not-found")
    e2e.kubectl("create", "job", job, f"--from=cronjob/{RELEASE}-backup", "-n", NAMESPACE)
    e2e.kubectl(
        "wait", f"job/{job}", "-n", NAMESPACE, "--for=condition=complete", "--timeout=300s",
        timeout=320,
    )  # fmt: skip
    logs = e2e.kubectl("logs", f"job/{job}", "-n", NAMESPACE).stdout
    assert "backup-db: wrote /backups/schedule-" in logs
    dump = logs.split("wrote ", 1)[1].split()[0]

    psql(e2e, "drop database if exists restored")
    psql(e2e, "create database restored")
    dbtools = next(
        i for i in json.loads(images_json.read_text())["images"] if i["name"] == "dbtools"
    )
    restore = restore_job(dbtools["ref"], dump)
    e2e.kubectl("delete", "job", "restore-e2e", "-n", NAMESPACE, "--ignore-not-found")
    kubectl_apply(e2e, restore)
    e2e.kubectl(
        "wait", "job/restore-e2e", "-n", NAMESPACE, "--for=condition=complete", "--timeout=300s",
        timeout=320,
    )  # fmt: skip
    query = "select md5(string_agg(id || title || starts_at::text, ',' order by id)) from schedules"
    original = psql(e2e, query)
    assert original
    assert psql(e2e, query, db="restored") == original


def kubectl_apply(e2e: E2E, obj: dict[str, Any]) -> None:
    argv = (e2e.info.kubectl, "--kubeconfig", str(e2e.info.kubeconfig), "apply", "-f", "-")
    proc.run(argv, input=json.dumps(obj), timeout=60)


def restore_job(image: str, dump: str) -> dict[str, Any]:
    """A Job (Pod Security restricted) that loads ``dump`` into the database ``restored``."""
    env: list[dict[str, Any]] = [
        {"name": "PGHOST", "value": PG},
        {"name": "PGUSER", "value": "postgres"},
        {"name": "PGDATABASE", "value": "restored"},
        {
            "name": "PGPASSWORD",
            "valueFrom": {"secretKeyRef": {"name": f"{RELEASE}-db", "key": "admin-password"}},
        },
    ]
    script = f"gunzip -c {dump} | psql -v ON_ERROR_STOP=1 -q"
    spec = restricted_pod_spec("restore", image, script, env=env)
    spec["containers"][0]["volumeMounts"] = [
        {"name": "backups", "mountPath": "/backups", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    spec["volumes"] = [
        {"name": "backups", "persistentVolumeClaim": {"claimName": BACKUP_CLAIM}},
        {"name": "tmp", "emptyDir": {}},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "restore-e2e", "namespace": NAMESPACE},
        # The release's instance label: the chart's NetworkPolicy admits only the release's
        # pods to PostgreSQL, so a restore runs as one of them.
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": RELEASE_POD}, "spec": spec},
        },
    }


def restricted_pod_spec(
    name: str, image: str, script: str, env: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A one-container pod spec running ``bash -c script`` that Pod Security restricted admits."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["bash", "-c", script],
        "env": env or [],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    return {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }


# ----------------------------------------------------------------------------- Helm 4


def test_helm4_takes_over_the_release_with_server_side_apply(e2e: E2E) -> None:
    """A team moving to Helm 4 upgrades the release Helm 3 made: server-side apply, then smoke."""
    before = e2e.helm_history()[-1]["revision"]
    res = e2e.ci("deploy", "--env", "e2e", "--helm-major", "4", "--server-side")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    record = json.loads((e2e.out / "release.json").read_text())
    assert (record["revision"], record["previous_revision"]) == (before + 1, before)
    backend = e2e.kjson(
        "get", "deployment", f"{RELEASE}-backend", "-n", NAMESPACE, "--show-managed-fields"
    )
    managers = {m["manager"]: m["operation"] for m in backend["metadata"]["managedFields"]}
    assert "Apply" in managers.values(), managers
    res = e2e.ci("smoke", "--env", "e2e", *e2e.smoke_args)
    assert res.returncode == 0, res.stdout[-3000:]


def test_helm4_rolls_back_a_broken_upgrade(e2e: E2E, images_json: Path) -> None:
    """Helm 4 has no --atomic: the deploy uses --rollback-on-failure and the release recovers."""
    frontend = next(
        i for i in json.loads(images_json.read_text())["images"] if i["name"] == "frontend"
    )
    res = e2e.ci(
        "deploy", "--env", "e2e-short", "--helm-major", "4",
        "--set", f"backend.image.repository={frontend['repository']}",
        "--set", f"backend.image.digest={frontend['digest']}",
        "--set", "migration.enabled=false",
        "--set", "postgresql.metrics.enabled=false",  # its role comes from the migration Job
    )  # fmt: skip
    assert res.returncode == 1, res.stdout[-2000:]
    assert "rolled back" in one_line_error(res)
    history = e2e.helm_history()
    assert history[-1]["status"] == "deployed"
    assert history[-2]["status"] == "failed"
    res = e2e.ci("smoke", "--env", "e2e", *e2e.smoke_args)
    assert res.returncode == 0, res.stdout[-3000:]
