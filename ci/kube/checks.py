"""What is wrong with a pod, and one-line states of workloads, Jobs, claims and events.

Pure functions on the API's objects as dicts, so unit tests cover every rule without a cluster.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

HOOK_ANNOTATION = "helm.sh/hook"
BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def container_statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    status = pod.get("status") or {}
    all_statuses = (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    )
    return {s["name"]: s for s in all_statuses}


def pod_problem(pod: dict[str, Any]) -> str | None:
    """Why a pod is failing, in a few words, or None when nothing looks wrong (yet)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return f"failed: {status.get('reason') or status.get('message') or 'pod failed'}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"unschedulable: {cond.get('message', '')}".strip()
    for name, cs in container_statuses(pod).items():
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in BAD_WAITING:
            msg = (waiting.get("message") or "").splitlines()[0:1]
            return f"{name}: {waiting['reason']}" + (f" ({msg[0][:200]})" if msg else "")
        term = state.get("terminated") or {}
        if term and term.get("exitCode", 0) != 0:
            return f"{name}: exited {term.get('exitCode')} ({term.get('reason', '')})"
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if cs.get("restartCount", 0) > 0 and not cs.get("ready"):
            return f"{name}: restarted {cs['restartCount']}x, last exit {last.get('exitCode', '?')}"
    return None


def workload_line(kind: str, obj: dict[str, Any], *, settled: bool = False) -> tuple[str, bool]:
    """``("deployment/x 1/2 ready", False)`` for a Deployment or StatefulSet.

    Done means every replica is updated and ready, as Helm's wait sees it. With ``settled``
    it means the rollout is over (every replica runs the current template, none of an older
    one is left) and one replica at least is ready: an autoscaler's scale-up leaves new pods
    of the same template starting, and an upgrade with the same manifests would only wait.
    """
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    want = spec.get("replicas", 1)
    ready = status.get("readyReplicas") or 0
    updated = status.get("updatedReplicas") or 0
    done = ready >= want and updated >= want
    if settled:
        older = (status.get("replicas") or 0) - updated
        done = updated >= want and older <= 0 and (ready >= 1 or want == 0)
    line = f"{kind.lower()}/{name} {ready}/{want} ready"
    if updated < want:
        line += f", {updated}/{want} updated"
    return line, done


def job_line(obj: dict[str, Any]) -> tuple[str, bool]:
    """``("job/x (hook pre-upgrade): running", False)``."""
    meta = obj["metadata"]
    hook = (meta.get("annotations") or {}).get(HOOK_ANNOTATION)
    label = f"job/{meta['name']}" + (f" (hook {hook})" if hook else "")
    status = obj.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True":
        return f"{label}: succeeded", True
    if conditions.get("Failed") == "True":
        return f"{label}: failed", True
    if status.get("active"):
        return f"{label}: running", False
    return f"{label}: pending", False


def pvc_line(obj: dict[str, Any]) -> tuple[str, bool]:
    """``("pvc/x Pending", False)``: Helm's ``--wait`` waits for every claim to be Bound."""
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    return f"pvc/{obj['metadata']['name']} {phase}", phase == "Bound"


def event_line(ev: dict[str, Any]) -> str:
    """``Warning BackOff pod/x: message`` for an event."""
    obj = ev.get("involvedObject") or ev.get("regarding") or {}
    what = f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}"
    msg = " ".join(str(ev.get("message") or ev.get("note") or "").split())
    count = ev.get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    return f"{ev.get('type', '')} {ev.get('reason', '')} {what}: {msg}{times}"


def worth_showing(ev: dict[str, Any], shown: dict[str, int]) -> bool:
    """Show an event when new, then again only each time its count doubles.

    A failing probe repeats its event every few seconds; doubling keeps the log readable
    while still showing that the problem continues.
    """
    uid = str((ev.get("metadata") or {}).get("uid") or event_line(ev))
    count = int(ev.get("count") or 1)
    last = shown.get(uid)
    if last is not None and count < 2 * last:
        return False
    shown[uid] = count
    return True


def is_hook(obj: dict[str, Any]) -> bool:
    return HOOK_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


# ----------------------------------------------------------------------------- fail fast

#: Pull errors whose message says the image is not there: retrying cannot help.
_NOT_FOUND = re.compile(r"NotFound|not found|manifest unknown|name unknown", re.IGNORECASE)
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")


def created_since(obj: dict[str, Any], since: datetime | None) -> bool:
    """True when the object was created at or after ``since`` (always, without ``since``).

    A deploy judges only what it made: a Job that failed last night or a pod of an older
    revision must not stop it.
    """
    if since is None:
        return True
    stamp = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return True
    return created.timestamp() >= since.timestamp() - 2


def event_since(ev: dict[str, Any], since: datetime | None) -> bool:
    """True when the event last happened at or after ``since`` (always, without ``since``)."""
    if since is None:
        return True
    stamp = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
    if not stamp:
        meta = ev.get("metadata") or {}
        return created_since({"metadata": meta}, since)
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return True
    return when.timestamp() >= since.timestamp() - 2


def fatal_pod(pod: dict[str, Any], *, max_restarts: int) -> str | None:
    """Why a pod can never become ready, or None while it may still heal.

    Final: an image that does not exist (a pull ``NotFound``, not a pull still retrying after a
    network error), an invalid image name, a container whose configuration cannot be built
    (``CreateContainerConfigError``: a missing Secret or key), a container in
    ``CrashLoopBackOff`` that restarted ``max_restarts`` times. Everything else -- Pending while
    a volume binds, a pull retrying, the first crashes -- keeps waiting.
    """
    name = (pod.get("metadata") or {}).get("name", "?")
    for container, cs in container_statuses(pod).items():
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        message = " ".join(str(waiting.get("message") or "").split())
        where = f"pod/{name} container {container}"
        if reason in _PULL_REASONS and _NOT_FOUND.search(message):
            return f"{where}: image {cs.get('image', '')} not found in its registry"
        if reason == "InvalidImageName":
            return f"{where}: invalid image name ({message[:200]})"
        if reason == "CreateContainerConfigError":
            return f"{where}: CreateContainerConfigError ({message[:200]})"
        restarts = int(cs.get("restartCount") or 0)
        if reason == "CrashLoopBackOff" and restarts >= max_restarts:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            code = last.get("exitCode", "?")
            return f"{where}: CrashLoopBackOff after {restarts} restarts (last exit {code})"
    return None


def fatal_job(job: dict[str, Any]) -> str | None:
    """Why a Job failed for good (its retries are used up), or None while it may succeed."""
    conditions = (job.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            meta = job.get("metadata") or {}
            hook = (meta.get("annotations") or {}).get(HOOK_ANNOTATION)
            label = f"job/{meta.get('name', '?')}" + (f" (hook {hook})" if hook else "")
            why = cond.get("reason") or "Failed"
            note = " ".join(str(cond.get("message") or "").split())[:200]
            return f"{label} failed: {why}" + (f" ({note})" if note else "")
    return None
