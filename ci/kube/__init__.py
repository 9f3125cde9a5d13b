"""Cluster queries for deploy progress and failure diagnosis, through the Kubernetes client.

Why a client library and not ``kubectl``: progress needs a watch on events while Helm runs, and
diagnosis needs structured pod states; parsing ``kubectl`` text for either is brittle. The
parts: ``kubeconfig`` (which file and context), ``client`` (a connected client, readiness),
``checks`` (pure functions on the API's objects), ``monitor`` (progress while Helm runs),
``diagnosis`` (why a deploy failed) and ``lease`` (one deploy per environment at a time). The
names the rest of the toolkit uses are all importable from ``ci.kube``.
"""

from __future__ import annotations

from ci.kube.checks import (
    BAD_WAITING,
    HOOK_ANNOTATION,
    event_line,
    fatal_job,
    fatal_pod,
    is_hook,
    job_line,
    pod_problem,
    pvc_line,
    workload_line,
    worth_showing,
)
from ci.kube.client import (
    LOG_LINES,
    PSS_LABELS,
    Kube,
    api_ready,
    connect,
    first_line,
    preload,
)
from ci.kube.diagnosis import Diagnosis, diagnose
from ci.kube.kubeconfig import Access, access
from ci.kube.lease import Holder, Lease
from ci.kube.monitor import (
    Monitor,
    PodReport,
    Sink,
    pods_with_problems,
    progress_lines,
    status_lines,
)

__all__ = [
    "BAD_WAITING",
    "HOOK_ANNOTATION",
    "LOG_LINES",
    "PSS_LABELS",
    "Access",
    "Diagnosis",
    "Holder",
    "Kube",
    "Lease",
    "Monitor",
    "PodReport",
    "Sink",
    "access",
    "api_ready",
    "connect",
    "diagnose",
    "event_line",
    "fatal_job",
    "fatal_pod",
    "first_line",
    "is_hook",
    "job_line",
    "pod_problem",
    "pods_with_problems",
    "preload",
    "progress_lines",
    "pvc_line",
    "status_lines",
    "workload_line",
    "worth_showing",
]
