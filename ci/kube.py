"""Cluster queries for deploy progress and failure diagnosis, through the Kubernetes client.

Why a client library and not ``kubectl``: progress needs a watch on events while Helm runs, and
diagnosis needs structured pod states; parsing ``kubectl`` text for either is brittle. The
official ``kubernetes`` package is imported lazily (it is slow to import and ``ci --help``
must stay fast). Objects are turned into plain dicts (the API's camelCase JSON) right away, so
every decision -- is this ready, what is wrong with that pod -- is a pure function on a dict
that unit tests exercise without a cluster.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci import errors
from ci.config import Environment
from ci.errors import ConfigError, EnvironmentNotReady

#: Pod Security Standards labels every deploy namespace carries.
PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}
HOOK_ANNOTATION = "helm.sh/hook"
LOG_LINES = 20
BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}

Sink = Callable[[str], None]


# ----------------------------------------------------------------------------- access


@dataclass(frozen=True)
class Access:
    """How to reach an environment's cluster: kubeconfig file (None: the default) and context."""

    kubeconfig: str | None
    context: str | None
    source: str


@contextmanager
def access(env: Environment, environ: Mapping[str, str] | None = None) -> Iterator[Access]:
    """The environment's kubeconfig; a variable's content goes to a private temporary file.

    GitHub secrets hold a kubeconfig's content, not a path: the content goes to a 0600 file
    that is deleted afterwards, and is masked so no log shows it. A variable holding a path to
    an existing file (handy on a laptop) is used as that path. Without the variable, the
    environment's ``kubeconfig`` file, then ``KUBECONFIG`` or ``~/.kube/config``, are used.
    """
    environ = os.environ if environ is None else environ
    content = environ.get(env.kubeconfig_env or "", "") if env.kubeconfig_env else ""
    if content and "\n" not in content.strip() and Path(content.strip()).is_file():
        yield Access(content.strip(), env.kube_context, f"${env.kubeconfig_env} (path)")
        return
    if content:
        from ci import gha

        gha.mask(content)
        fd, name = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
            yield Access(name, env.kube_context, f"${env.kubeconfig_env}")
        finally:
            Path(name).unlink(missing_ok=True)
        return
    if env.kubeconfig is not None:
        if not env.kubeconfig.is_file():
            raise ConfigError(f"environment '{env.name}': kubeconfig {env.kubeconfig} not found")
        yield Access(str(env.kubeconfig), env.kube_context, str(env.kubeconfig))
        return
    if environ.get("KUBECONFIG"):
        yield Access(environ["KUBECONFIG"], env.kube_context, f"KUBECONFIG={environ['KUBECONFIG']}")
        return
    unset = (
        f"${env.kubeconfig_env} and KUBECONFIG unset" if env.kubeconfig_env else "KUBECONFIG unset"
    )
    yield Access(None, env.kube_context, f"{Path.home() / '.kube' / 'config'} ({unset})")


# ----------------------------------------------------------------------------- client


class Kube:
    """A connected client: the typed APIs plus conversion of their objects to dicts."""

    def __init__(self, acc: Access, request_timeout: float = 15.0) -> None:
        client, config = _modules("client", "config")
        conf = client.Configuration()
        conf.retries = 1
        try:
            config.load_kube_config(
                config_file=acc.kubeconfig, context=acc.context, client_configuration=conf
            )
        except Exception as exc:  # ConfigException, OSError, YAML errors: all "cannot connect"
            raise EnvironmentNotReady(
                f"cannot load kubeconfig {acc.source}: {first_line(exc)}"
            ) from None
        self.access = acc
        self.timeout = request_timeout
        self.api: Any = client.ApiClient(conf)
        self.core: Any = client.CoreV1Api(self.api)
        self.apps: Any = client.AppsV1Api(self.api)
        self.batch: Any = client.BatchV1Api(self.api)
        self.version_api: Any = client.VersionApi(self.api)

    def to_dict(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return data

    def items(self, response: Any) -> list[dict[str, Any]]:
        return [self.to_dict(i) for i in response.items]

    def server_version(self) -> str:
        """The API server's version; ``EnvironmentNotReady`` (exit 3) when it does not answer."""
        try:
            info = self.version_api.get_code(_request_timeout=self.timeout)
        except Exception as exc:
            raise EnvironmentNotReady(
                f"cluster unreachable through {self.access.source}: {first_line(exc)}"
            ) from None
        return str(info.git_version)

    def ready(self) -> bool:
        """True when the API server answers ``/readyz`` with 200: serving, not just listening.

        There is no typed API for ``/readyz``; the request goes through the client's own
        connection pool (its TLS and client certificates) with its bearer token, if any.
        """
        conf = self.api.configuration
        auth = conf.auth_settings().get("BearerToken") or {}
        headers = {auth["key"]: auth["value"]} if auth.get("value") else {}
        try:
            response = self.api.rest_client.request(
                "GET", conf.host + "/readyz", headers=headers, _request_timeout=self.timeout
            )
        except Exception:  # refused, timed out, TLS or an error status: all "not ready"
            return False
        return int(response.status) == 200

    def ensure_namespace(self, name: str, labels: Mapping[str, str]) -> str:
        """Create the namespace with ``labels``, or add missing labels; say which happened."""
        (exceptions,) = _modules("client.exceptions")
        try:
            ns = self.to_dict(self.core.read_namespace(name, _request_timeout=self.timeout))
        except exceptions.ApiException as exc:
            if exc.status != 404:
                raise EnvironmentNotReady(f"namespace {name}: {exc.status} {exc.reason}") from None
            body = {"metadata": {"name": name, "labels": dict(labels)}}
            self.core.create_namespace(body, _request_timeout=self.timeout)
            return "created"
        have = ns.get("metadata", {}).get("labels") or {}
        missing = {k: v for k, v in labels.items() if have.get(k) != v}
        if not missing:
            return "unchanged"
        self.core.patch_namespace(
            name, {"metadata": {"labels": missing}}, _request_timeout=self.timeout
        )
        return "labelled"

    def pod_logs(self, namespace: str, pod: dict[str, Any], lines: int = LOG_LINES) -> str:
        """The last lines of each container (the crashed run's when the current one is empty)."""
        out = []
        name = pod["metadata"]["name"]
        statuses = _container_statuses(pod)
        for c in (pod.get("spec") or {}).get("containers", []):
            restarted = statuses.get(c["name"], {}).get("restartCount", 0) > 0
            text = self._log(namespace, name, c["name"], lines, previous=False)
            if not text.strip() and restarted:
                text = self._log(namespace, name, c["name"], lines, previous=True)
            if text.strip():
                out.append(f"[{c['name']}]\n{text.rstrip()}")
        return "\n".join(out)

    def _log(self, ns: str, pod: str, container: str, lines: int, *, previous: bool) -> str:
        try:
            text: str = self.core.read_namespaced_pod_log(
                pod,
                ns,
                container=container,
                tail_lines=lines,
                previous=previous,
                _request_timeout=self.timeout,
            )
        except Exception:  # no logs yet (container not started) is not an error to report
            return ""
        return text


def _modules(*names: str) -> tuple[Any, ...]:
    """Parts of the ``kubernetes`` package, imported on first use and typed loosely.

    Its generated API is only partly annotated; the dicts this module works on are typed.
    """
    import importlib

    return tuple(importlib.import_module(f"kubernetes.{n}") for n in names)


def connect(acc: Access) -> Kube:
    """A client whose API server answered: reachability is checked before anything changes."""
    kube = Kube(acc)
    kube.server_version()
    return kube


def api_ready(kubeconfig: Path, *, context: str | None = None, timeout: float = 20.0) -> bool:
    """True when the cluster of a kubeconfig file answers ``/readyz`` within ``timeout``."""
    if not kubeconfig.is_file():
        return False
    try:
        kube = Kube(Access(str(kubeconfig), context, str(kubeconfig)), request_timeout=timeout)
    except EnvironmentNotReady:  # a kubeconfig the client cannot load reaches no cluster
        return False
    return kube.ready()


def first_line(exc: BaseException) -> str:
    """The useful part of a client error: urllib3 buries the OS error deep in its message."""
    text = str(exc).strip() or type(exc).__name__
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0).strip()
    return errors.first_line(text, 300)


# ----------------------------------------------------------------------------- pure checks


def _container_statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
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
    for name, cs in _container_statuses(pod).items():
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


# ----------------------------------------------------------------------------- snapshot


def status_lines(kube: Kube, namespace: str) -> list[tuple[str, bool]]:
    """``(line, done)`` per workload, Job and claim in the namespace, as it stands now."""
    out = []
    for d in kube.items(kube.apps.list_namespaced_deployment(namespace, _request_timeout=10)):
        out.append(workload_line("Deployment", d))
    for s in kube.items(kube.apps.list_namespaced_stateful_set(namespace, _request_timeout=10)):
        out.append(workload_line("StatefulSet", s))
    for j in kube.items(kube.batch.list_namespaced_job(namespace, _request_timeout=10)):
        out.append(job_line(j))
    claims = kube.core.list_namespaced_persistent_volume_claim(namespace, _request_timeout=10)
    out += [pvc_line(c) for c in kube.items(claims)]
    return out


def progress_lines(kube: Kube, namespace: str) -> list[str]:
    return [line for line, _done in status_lines(kube, namespace)]


def pods_with_problems(kube: Kube, namespace: str) -> list[tuple[dict[str, Any], str]]:
    pods = kube.items(kube.core.list_namespaced_pod(namespace, _request_timeout=10))
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
    """

    kube: Kube
    namespace: str
    sink: Sink
    interval: float = 3.0
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

        self._watch(self.kube.batch.list_namespaced_job, handle)

    def _watch(self, list_fn: Any, handle: Callable[[str, dict[str, Any]], None]) -> None:
        """Stream changes after the current state until stopped (short watches, resumed)."""
        (watch,) = _modules("watch")
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


# ----------------------------------------------------------------------------- diagnosis


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


def diagnose(kube: Kube, namespace: str, seen: Mapping[str, PodReport] | None = None) -> Diagnosis:
    """Failing pods with their last log lines, recent Warning events, hook Jobs' logs.

    ``seen`` are pods a ``Monitor`` caught failing; they are reported even if a rollback has
    deleted them since.
    """
    reports = dict(seen or {})
    for pod, problem in pods_with_problems(kube, namespace):
        name = pod["metadata"]["name"]
        reports[name] = PodReport(name, problem, kube.pod_logs(namespace, pod))
    events = [
        e
        for e in kube.items(kube.core.list_namespaced_event(namespace, _request_timeout=10))
        if e.get("type") == "Warning"
    ]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    hook_logs: dict[str, str] = {}
    for job in kube.items(kube.batch.list_namespaced_job(namespace, _request_timeout=10)):
        if not is_hook(job):
            continue
        name = job["metadata"]["name"]
        pods = kube.items(
            kube.core.list_namespaced_pod(
                namespace, label_selector=f"job-name={name}", _request_timeout=10
            )
        )
        hook_logs[name] = "\n".join(kube.pod_logs(namespace, p, lines=30) for p in pods[-1:])
    not_ready = [line for line, done in status_lines(kube, namespace) if not done]
    return Diagnosis(
        list(reports.values()), [event_line(e) for e in events[-20:]], hook_logs, not_ready
    )
