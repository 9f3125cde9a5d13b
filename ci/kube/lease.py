"""One deploy per environment at a time: a ``coordination.k8s.io`` Lease in its namespace.

Why a Lease: Helm's own guard (a pending release) only shows up once an upgrade has started,
and it cannot tell an upgrade in progress from one whose process was killed. A Lease held and
renewed by the running deploy can: a second deploy waits for it, naming the holder, and a
Lease whose holder stopped renewing has expired, so a release it left pending is known to be
abandoned and can be recovered at once.

The holder's identity is ``RUN/HOST/PID``; the Lease's annotations keep the run, host and start
time for the message another deploy prints while it waits.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ci.errors import DeployError
from ci.kube.client import Kube, modules

ANNOTATION = "ci.schedule-tracker.dev"
#: How long a holder that stopped renewing keeps the Lease (renewed every third of it).
DURATION = 30
#: What ``state`` says about a Lease: nobody ever took it, it was handed back, its holder
#: stopped renewing, or somebody holds it now.
ABSENT, RELEASED, EXPIRED, HELD = "absent", "released", "expired", "held"


@dataclass(frozen=True)
class Holder:
    """Who holds a Lease, as another deploy reports it."""

    identity: str
    run: str
    host: str
    started: str

    def describe(self) -> str:
        return f"run {self.run} on {self.host} (since {self.started})"


def lease_name(release: str) -> str:
    return f"ci-deploy-{release}"[:63]


def micro_time(when: datetime) -> str:
    """The API's MicroTime format."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: Any) -> datetime | None:
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


def state(lease: dict[str, Any] | None, now: datetime) -> str:
    """``ABSENT``, ``RELEASED``, ``EXPIRED`` or ``HELD`` (pure: the Lease as a dict)."""
    if lease is None:
        return ABSENT
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return RELEASED
    renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or DURATION)
    if renewed is None or (now - renewed).total_seconds() > duration:
        return EXPIRED
    return HELD


def holder(lease: dict[str, Any]) -> Holder:
    """The holder named by a Lease's spec and annotations."""
    meta = lease.get("metadata") or {}
    notes = meta.get("annotations") or {}
    identity = str((lease.get("spec") or {}).get("holderIdentity") or "")
    return Holder(
        identity,
        notes.get(f"{ANNOTATION}/run", identity),
        notes.get(f"{ANNOTATION}/host", "?"),
        notes.get(f"{ANNOTATION}/started", "?"),
    )


def body(name: str, me: Holder, now: datetime, version: str | None = None) -> dict[str, Any]:
    """The Lease as this deploy holds it."""
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "ci"},
        "annotations": {
            f"{ANNOTATION}/run": me.run,
            f"{ANNOTATION}/host": me.host,
            f"{ANNOTATION}/started": me.started,
        },
    }
    if version is not None:
        meta["resourceVersion"] = version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": me.identity,
            "leaseDurationSeconds": DURATION,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
        },
    }


def me(run: str) -> Holder:
    host = socket.gethostname()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Holder(f"{run}/{host}/{os.getpid()}", run, host, started)


class Lease:
    """The deploy Lease of one release: ``acquire`` (waiting), renewed meanwhile, ``release``."""

    def __init__(self, kube: Kube, namespace: str, release: str, run: str) -> None:
        (client,) = modules("client")
        self.api: Any = client.CoordinationV1Api(kube.api)
        self.kube = kube
        self.namespace = namespace
        self.name = lease_name(release)
        self.me = me(run)
        self.previous = ABSENT
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        (exceptions,) = modules("client.exceptions")
        try:
            obj = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=10)
        except exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.kube.to_dict(obj)

    def _take(self, lease: dict[str, Any] | None) -> bool:
        """Create or take over the Lease; False when another deploy was quicker (409)."""
        (exceptions,) = modules("client.exceptions")
        now = datetime.now(UTC)
        try:
            if lease is None:
                self.api.create_namespaced_lease(
                    self.namespace, body(self.name, self.me, now), _request_timeout=10
                )
            else:
                version = lease["metadata"]["resourceVersion"]
                self.api.replace_namespaced_lease(
                    self.name,
                    self.namespace,
                    body(self.name, self.me, now, version),
                    _request_timeout=10,
                )
        except exceptions.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def acquire(
        self,
        wait: float,
        on_wait: Callable[[Holder], None],
        *,
        poll: float = 2.0,
        where: str = "",
    ) -> str:
        """Hold the Lease, waiting up to ``wait`` seconds for another holder to finish.

        Returns the state the Lease was in (``ABSENT``, ``RELEASED`` or ``EXPIRED``); raises
        ``DeployError`` with one line naming the holder when the wait runs out.
        """
        deadline = time.monotonic() + wait
        last: Holder | None = None
        while True:
            lease = self._read()
            found = state(lease, datetime.now(UTC))
            if found != HELD and self._take(lease):
                self.previous = found
                self._start_renewing()
                return found
            if lease is not None and found == HELD:
                current = holder(lease)
                if current != last:
                    on_wait(current)
                    last = current
                if time.monotonic() >= deadline:
                    raise DeployError(
                        f"{where or self.name}: another deploy holds the environment: "
                        f"{current.describe()}; gave up after waiting {wait:g}s"
                    )
            time.sleep(poll)

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew, daemon=True, name="lease")
        self._thread.start()

    def _renew(self) -> None:
        """Renew every third of the duration while held; stop when someone else holds it."""
        while not self._stop.wait(DURATION / 3):
            try:
                lease = self._read()
                if lease is None or holder(lease).identity != self.me.identity:
                    return
                lease["spec"]["renewTime"] = micro_time(datetime.now(UTC))
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=10
                )
            except Exception:  # a missed renewal is retried; the Lease lasts three periods
                continue

    def release(self) -> None:
        """Hand the Lease back (holder cleared), so the next deploy need not wait it out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        try:
            lease = self._read()
            if lease is None or holder(lease).identity != self.me.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["renewTime"] = micro_time(datetime.now(UTC))
            self.api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=10)
        except Exception:  # an unreleased Lease expires on its own after DURATION
            return
