"""What is wrong with a pod, and one-line states of workloads, Jobs, claims and events.

Pure functions on the API's objects as dicts, so unit tests cover every rule without a cluster.
"""

from __future__ import annotations

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


def workload_line(kind: str, obj: dict[str, Any]) -> tuple[str, bool]:
    """``("deployment/x 1/2 ready", False)`` for a Deployment or StatefulSet."""
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    want = spec.get("replicas", 1)
    ready = status.get("readyReplicas") or 0
    updated = status.get("updatedReplicas") or 0
    done = ready >= want and updated >= want
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
