"""Why a deploy failed: failing pods with their logs, Warning events, hook Jobs' logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ci.kube.checks import event_line, event_since, is_hook
from ci.kube.client import Kube
from ci.kube.monitor import PodReport, pods_with_problems, status_lines


@dataclass
class Diagnosis:
    pods: list[PodReport]
    events: list[str]
    hook_logs: dict[str, str]
    not_ready: list[str] = field(default_factory=list)

    def text(self) -> str:
        out: list[str] = []
        if self.not_ready:
            out.append("not ready: " + ", ".join(self.not_ready))
        for p in self.pods:
            out.append(f"pod/{p.name}: {p.problem}")
            out += [f"    {ln}" for ln in p.logs.splitlines()]
        if self.events:
            out.append("warning events:")
            out += [f"    {e}" for e in self.events]
        for job, logs in self.hook_logs.items():
            out.append(f"hook job/{job} logs:")
            out += [f"    {ln}" for ln in logs.splitlines()]
        return "\n".join(out)


def diagnose(
    kube: Kube,
    namespace: str,
    seen: Mapping[str, PodReport] | None = None,
    since: datetime | None = None,
) -> Diagnosis:
    """Failing pods with their last log lines, recent Warning events, hook Jobs' logs.

    ``seen`` are pods a ``Monitor`` caught failing; they are reported even if a rollback has
    deleted them since. With ``since`` (the deploy's start) only events newer than it are
    shown: warnings from before the deploy explain nothing about it.
    """
    reports = dict(seen or {})
    for pod, problem in pods_with_problems(kube, namespace):
        name = pod["metadata"]["name"]
        reports[name] = PodReport(name, problem, kube.pod_logs(namespace, pod))
    events = [
        e
        for e in kube.list("v1", "events", namespace)
        if e.get("type") == "Warning" and event_since(e, since)
    ]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    hook_logs: dict[str, str] = {}
    for job in kube.list("batch/v1", "jobs", namespace):
        if not is_hook(job):
            continue
        name = job["metadata"]["name"]
        pods = kube.list("v1", "pods", namespace, labelSelector=f"job-name={name}")
        hook_logs[name] = "\n".join(kube.pod_logs(namespace, p, lines=30) for p in pods[-1:])
    not_ready = [line for line, done in status_lines(kube, namespace) if not done]
    return Diagnosis(
        list(reports.values()), [event_line(e) for e in events[-20:]], hook_logs, not_ready
    )
