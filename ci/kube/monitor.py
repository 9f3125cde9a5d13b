"""Progress while Helm runs: readiness changes, hook Jobs and Warning events as they happen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ci.kube.checks import (
    created_since,
    event_line,
    fatal_job,
    fatal_pod,
    job_line,
    pod_problem,
    pvc_line,
    workload_line,
    worth_showing,
)
from ci.kube.client import Kube, first_line, modules

Sink = Callable[[str], None]


# ----------------------------------------------------------------------------- snapshot


def status_lines(kube: Kube, namespace: str, *, settled: bool = False) -> list[tuple[str, bool]]:
    """``(line, done)`` per workload, Job and claim in the namespace, as it stands now
    (``settled``: workloads done once their rollout is over, see ``workload_line``)."""
    out = []
    for d in kube.list("apps/v1", "deployments", namespace):
        out.append(workload_line("Deployment", d, settled=settled))
    for s in kube.list("apps/v1", "statefulsets", namespace):
        out.append(workload_line("StatefulSet", s, settled=settled))
    for j in kube.list("batch/v1", "jobs", namespace):
        out.append(job_line(j))
    claims = kube.list("v1", "persistentvolumeclaims", namespace)
    out += [pvc_line(c) for c in claims]
    return out


def progress_lines(kube: Kube, namespace: str) -> list[str]:
    return [line for line, _done in status_lines(kube, namespace)]


def pods_with_problems(kube: Kube, namespace: str) -> list[tuple[dict[str, Any], str]]:
    pods = kube.list("v1", "pods", namespace)
    found = []
    for pod in pods:
        problem = pod_problem(pod)
        if problem:
            found.append((pod, problem))
    return found


# ----------------------------------------------------------------------------- monitor


@dataclass
class PodReport:
    name: str
    problem: str
    logs: str


@dataclass
class Monitor:
    """Watches a namespace while Helm runs: readiness changes, hook Jobs, Warning events.

    Three daemon threads: one polls workloads, claims and pods (reporting only what
    changed), two watch Jobs and events. Pods seen failing have their last log lines kept at
    once, because a rollback deletes them before a diagnosis could read them.

    Fail fast: a pod or Job created since ``since`` that can never succeed (``fatal_pod``,
    ``fatal_job``) is recorded in ``fatal`` and reported once to ``on_fatal``, which stops Helm
    rather than letting it wait out its timeout.
    """

    kube: Kube
    namespace: str
    sink: Sink
    interval: float = 3.0
    since: datetime | None = None
    max_restarts: int = 3
    on_fatal: Callable[[str], None] | None = None
    fatal: str | None = None
    problems: dict[str, PodReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for target in (self._poll, self._watch_events, self._watch_jobs):
            t = threading.Thread(target=self._guard(target), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=8)

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        """A monitor must never break a deploy: errors end the thread with one note."""

        def run() -> None:
            try:
                target()
            except Exception as exc:
                if not self._stop.is_set():
                    self._emit(f"(progress reporting stopped: {first_line(exc)})")

        return run

    def _emit(self, line: str) -> None:
        with self._lock:
            self.sink(line)

    def _judge(self, reason: str | None) -> None:
        """Record the first final failure and report it once."""
        if reason is None:
            return
        with self._lock:
            if self.fatal is not None:
                return
            self.fatal = reason
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def _poll(self) -> None:
        """Workloads and claims every ``interval``; failing pods with their logs."""
        shown: dict[str, str] = {}
        while not self._stop.is_set():
            for line in progress_lines(self.kube, self.namespace):
                key = line.split(" ", 1)[0].split(":", 1)[0]
                if not key.startswith("job/") and shown.get(key) != line:
                    shown[key] = line
                    self._emit(f"  {line}")
            for pod, problem in pods_with_problems(self.kube, self.namespace):
                name = pod["metadata"]["name"]
                known = self.problems.get(name)
                if known is None or known.problem != problem:
                    logs = self.kube.pod_logs(self.namespace, pod)
                    self.problems[name] = PodReport(name, problem, logs)
                    self._emit(f"  pod/{name}: {problem}")
                if created_since(pod, self.since):
                    self._judge(fatal_pod(pod, max_restarts=self.max_restarts))
            self._stop.wait(self.interval)

    def _watch_events(self) -> None:
        """Warning events as they happen (repeats only when their count doubles)."""
        shown: dict[str, int] = {}

        def handle(kind: str, ev: dict[str, Any]) -> None:
            if ev.get("type") != "Warning" or kind not in ("ADDED", "MODIFIED"):
                return
            if worth_showing(ev, shown):
                line = event_line(ev)
                self.warnings.append(line)
                self._emit(f"  event: {line}")

        self._watch(self.kube.core.list_namespaced_event, handle)

    def _watch_jobs(self) -> None:
        """Job status changes, watched rather than polled: Helm deletes a hook Job the moment
        it succeeds, so polling would often miss the success."""
        shown: dict[str, str] = {}

        def handle(kind: str, job: dict[str, Any]) -> None:
            line = job_line(job)[0]
            name = job["metadata"]["name"]
            if kind == "DELETED":
                line = f"{line} (deleted)" if shown.get(name) != line else ""
            if line and shown.get(name) != line:
                shown[name] = line
                self._emit(f"  {line}")
            if kind != "DELETED" and created_since(job, self.since):
                self._judge(fatal_job(job))

        self._watch(self.kube.batch.list_namespaced_job, handle)

    def _watch(self, list_fn: Any, handle: Callable[[str, dict[str, Any]], None]) -> None:
        """Stream changes after the current state until stopped (short watches, resumed)."""
        (watch,) = modules("watch")
        version = list_fn(self.namespace, _request_timeout=10).metadata.resource_version
        while not self._stop.is_set():
            w = watch.Watch()
            for item in w.stream(
                list_fn,
                self.namespace,
                resource_version=version,
                timeout_seconds=5,
                _request_timeout=15,
            ):
                obj = self.kube.to_dict(item["object"])
                version = obj.get("metadata", {}).get("resourceVersion", version)
                handle(item["type"], obj)
                if self._stop.is_set():
                    w.stop()
                    break
