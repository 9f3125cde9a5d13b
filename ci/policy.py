"""Our own rules on rendered objects, each with an id, a reason and a message that says the fix.

Why rules of our own on top of schema validation: a schema says an object is well-formed, not
that it is safe to run. These rules encode what the platform needs: pods that pass Pod Security
``restricted``, resources everywhere (requests equal to limits for the stateful services),
probes on long-running containers, pinned images, Helm hooks that do not break the next
upgrade, and no ``replicas`` fighting an autoscaler.

``RULES`` maps each id to the one-line description the chart README lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from ci.manifests import ERROR, WARNING, Issue, Manifest

Rule = Callable[[Manifest, "Context"], Iterator[Issue]]

RULES: dict[str, str] = {
    "SEC001": "pods and containers run as non-root (runAsNonRoot, no runAsUser 0)",
    "SEC002": "containers set allowPrivilegeEscalation: false",
    "SEC003": "containers drop ALL capabilities and add none but NET_BIND_SERVICE",
    "SEC004": "seccompProfile RuntimeDefault or Localhost on the pod or every container",
    "SEC005": "no privileged containers, host namespaces, hostPorts, or volume types outside "
    "Pod Security restricted's list",
    "SEC006": "readOnlyRootFilesystem: true (warning: some processes need a writable root)",
    "RES001": "every container has CPU and memory requests and limits",
    "RES002": "containers of StatefulSets have requests equal to limits (dedicated resources)",
    "PRB001": "long-running containers have liveness and readiness probes",
    "IMG001": "images are pinned: a tag other than latest, or a digest",
    "HOOK001": "Jobs are Helm hooks (a plain Job cannot be upgraded: its template is immutable)",
    "HOOK002": "hook Jobs have hook-delete-policy before-hook-creation",
    "HOOK003": "the migration Job runs before upgrades and deletes itself when it succeeds",
    "HPA001": "a Deployment scaled by an HPA does not set replicas",
}

POD_OWNERS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "ReplicationController",
}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"}
ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}
#: Volume types Pod Security "restricted" allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
MIGRATION_COMPONENT = "migration"


class Context:
    """Facts about the whole rendering that single-object rules need (HPA targets)."""

    def __init__(self, manifests: Iterable[Manifest]) -> None:
        self.hpa_targets: set[tuple[str, str]] = set()
        for m in manifests:
            if m.kind == "HorizontalPodAutoscaler":
                ref = (m.obj.get("spec") or {}).get("scaleTargetRef") or {}
                self.hpa_targets.add((str(ref.get("kind")), str(ref.get("name"))))


def evaluate(manifests: Iterable[Manifest]) -> list[Issue]:
    """Every rule on every object."""
    items = list(manifests)
    ctx = Context(items)
    issues: list[Issue] = []
    for manifest in items:
        for rule in ALL_RULES:
            issues += list(rule(manifest, ctx))
    return issues


# ----------------------------------------------------------------------------- pod access


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    """The pod spec inside a workload (Pod, Deployment..., CronJob), or None."""
    spec = manifest.obj.get("spec") or {}
    if manifest.kind == "Pod":
        return spec if isinstance(spec, dict) else None
    if manifest.kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    elif manifest.kind not in POD_OWNERS:
        return None
    template = (spec.get("template") or {}).get("spec")
    return template if isinstance(template, dict) else None


def containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind, container)`` for init, regular and ephemeral containers."""
    for key, label in (
        ("initContainers", "init container"),
        ("containers", "container"),
        ("ephemeralContainers", "ephemeral container"),
    ):
        for c in pod.get(key) or []:
            if isinstance(c, dict):
                yield label, c


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return dict(meta.get("annotations") or {})


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return dict(meta.get("labels") or {})


def _issue(
    m: Manifest, rule: str, message: str, needle: str | None = None, severity: str = ERROR
) -> Issue:
    return Issue(m, rule, message, severity, needle)


def _needle(c: dict[str, Any]) -> str:
    return f"name: {c.get('name')}"


# ----------------------------------------------------------------------------- security


def sec_non_root(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    if pod is None:
        return
    psc = pod.get("securityContext") or {}
    for label, c in containers(pod):
        sc = c.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if uid == 0:
            yield _issue(
                m, "SEC001", f"{label} {c.get('name')} runs as root (runAsUser: 0)", _needle(c)
            )
        elif non_root is not True:
            yield _issue(
                m,
                "SEC001",
                f"{label} {c.get('name')} may run as root: set runAsNonRoot: true",
                _needle(c),
            )


def sec_privilege_escalation(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    for label, c in containers(pod or {}):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            yield _issue(
                m,
                "SEC002",
                f"{label} {c.get('name')} must set allowPrivilegeEscalation: false",
                _needle(c),
            )


def sec_capabilities(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    for label, c in containers(pod or {}):
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield _issue(
                m, "SEC003", f"{label} {c.get('name')} must drop ALL capabilities", _needle(c)
            )
        extra = set(caps.get("add") or []) - ALLOWED_CAPABILITIES
        if extra:
            yield _issue(
                m,
                "SEC003",
                f"{label} {c.get('name')} adds capabilities {', '.join(sorted(extra))}",
                "add:",
            )


def sec_seccomp(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    if pod is None:
        return
    pod_profile = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    for label, c in containers(pod):
        own = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        profile = own or pod_profile
        if profile not in SECCOMP_OK:
            yield _issue(
                m,
                "SEC004",
                f"{label} {c.get('name')} needs seccompProfile "
                f"RuntimeDefault (has {profile or 'none'})",
                _needle(c),
            )


def sec_host_access(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    if pod is None:
        return
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            yield _issue(m, "SEC005", f"pod uses {key}", key)
    for vol in pod.get("volumes") or []:
        for kind in sorted(set(vol) - {"name"} - RESTRICTED_VOLUMES):
            yield _issue(
                m,
                "SEC005",
                f"volume {vol.get('name')} is a {kind} (not allowed by Pod Security restricted)",
                kind,
            )
    for label, c in containers(pod):
        if (c.get("securityContext") or {}).get("privileged"):
            yield _issue(m, "SEC005", f"{label} {c.get('name')} is privileged", "privileged")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                yield _issue(
                    m,
                    "SEC005",
                    f"{label} {c.get('name')} uses hostPort {port['hostPort']}",
                    "hostPort",
                )


def sec_read_only_root(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    for label, c in containers(pod or {}):
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            yield _issue(
                m,
                "SEC006",
                f"{label} {c.get('name')} has a writable root "
                "filesystem (mount an emptyDir where it writes)",
                _needle(c),
                WARNING,
            )


# ----------------------------------------------------------------------------- resources


def res_requests_limits(m: Manifest, ctx: Context) -> Iterator[Issue]:
    pod = pod_spec(m)
    for label, c in containers(pod or {}):
        res = c.get("resources") or {}
        missing = [
            f"{kind}.{what}"
            for kind in ("requests", "limits")
            for what in ("cpu", "memory")
            if what not in (res.get(kind) or {})
        ]
        if missing:
            yield _issue(
                m,
                "RES001",
                f"{label} {c.get('name')} has no resources {', '.join(missing)}",
                _needle(c),
            )
        bad = [
            f"{kind}.{what} {value!r}"
            for kind in ("requests", "limits")
            for what, value in _items(res.get(kind))
            if _quantity(value) is None
        ]
        if bad:
            yield _issue(
                m,
                "RES001",
                f"{label} {c.get('name')} resources {', '.join(bad)}: not a Kubernetes "
                "quantity (such as 500m, 2, 512Mi or 1Gi)",
                _needle(c),
            )


def res_dedicated(m: Manifest, ctx: Context) -> Iterator[Issue]:
    if m.kind != "StatefulSet":
        return
    for label, c in containers(pod_spec(m) or {}):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for what in ("cpu", "memory"):
            wanted, limit = _quantity(req.get(what)), _quantity(lim.get(what))
            if wanted is not None and limit is not None and wanted != limit:
                yield _issue(
                    m,
                    "RES002",
                    f"{label} {c.get('name')} requests {what} "
                    f"{req[what]} but limits {lim[what]}: stateful services need "
                    "requests equal to limits",
                    "resources:",
                )


def _items(section: Any) -> list[tuple[str, Any]]:
    """The ``name: quantity`` pairs of ``requests`` or ``limits`` (none when it is no mapping)."""
    return [(str(k), v) for k, v in section.items()] if isinstance(section, dict) else []


def _quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as a number, so ``1`` equals ``1000m`` and ``1Gi`` ``1024Mi``.

    None when ``value`` is not a quantity: RES001 reports it, and no comparison is made.
    """
    # Imported here: the kubernetes package takes a quarter of a second to import, and only
    # the resource rules need it (not `ci chart lint` or `render`, which import this module).
    from kubernetes.utils.quantity import parse_quantity

    if value is None or isinstance(value, bool):
        return None
    try:
        number: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except ValueError:
        return None
    return number if number.is_finite() else None


# ----------------------------------------------------------------------------- probes, images


def probes(m: Manifest, ctx: Context) -> Iterator[Issue]:
    if m.kind not in LONG_RUNNING:
        return
    for c in (pod_spec(m) or {}).get("containers") or []:
        missing = [p for p in ("livenessProbe", "readinessProbe") if p not in c]
        if missing:
            yield _issue(
                m, "PRB001", f"container {c.get('name')} has no {' or '.join(missing)}", _needle(c)
            )


def image_pinned(m: Manifest, ctx: Context) -> Iterator[Issue]:
    for label, c in containers(pod_spec(m) or {}):
        image = str(c.get("image") or "")
        problem = image_problem(image)
        if problem:
            yield _issue(
                m, "IMG001", f"{label} {c.get('name')} image {image!r} {problem}", "image:"
            )


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is."""
    if not image:
        return "is empty"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (it means latest)"
    tag = last.rsplit(":", 1)[1]
    if not tag:
        return "has an empty tag"
    if tag == "latest":
        return "uses the latest tag"
    return None


# ----------------------------------------------------------------------------- hooks, HPA


def _hook_events(obj: dict[str, Any]) -> set[str]:
    raw = _annotations(obj).get("helm.sh/hook", "")
    return {e.strip() for e in raw.split(",") if e.strip()}


def hooks(m: Manifest, ctx: Context) -> Iterator[Issue]:
    if m.kind != "Job":
        return
    notes = _annotations(m.obj)
    events = _hook_events(m.obj)
    if not events:
        yield _issue(
            m,
            "HOOK001",
            "Job is not a Helm hook: add the helm.sh/hook annotation "
            "(a plain Job fails the next upgrade)",
            "kind: Job",
        )
        return
    policies = {p.strip() for p in notes.get("helm.sh/hook-delete-policy", "").split(",")}
    if "before-hook-creation" not in policies:
        yield _issue(
            m,
            "HOOK002",
            "hook Job needs helm.sh/hook-delete-policy "
            "before-hook-creation (the next run cannot create it otherwise)",
            "helm.sh/hook",
        )
    if _labels(m.obj).get("app.kubernetes.io/component") != MIGRATION_COMPONENT:
        return
    if "pre-upgrade" not in events or not events & {"pre-install", "post-install"}:
        yield _issue(
            m,
            "HOOK003",
            "migration Job must run on pre-upgrade and on install "
            f"(helm.sh/hook is {','.join(sorted(events))})",
            "helm.sh/hook:",
        )
    if "hook-succeeded" not in policies:
        yield _issue(
            m,
            "HOOK003",
            "migration Job needs helm.sh/hook-delete-policy hook-succeeded",
            "helm.sh/hook",
        )


def hpa_replicas(m: Manifest, ctx: Context) -> Iterator[Issue]:
    if (m.kind, m.name) in ctx.hpa_targets and "replicas" in (m.obj.get("spec") or {}):
        yield _issue(
            m,
            "HPA001",
            "sets spec.replicas while an HPA scales it: every upgrade "
            "resets the replica count (and conflicts under server-side apply)",
            "replicas:",
        )


ALL_RULES: tuple[Rule, ...] = (
    sec_non_root,
    sec_privilege_escalation,
    sec_capabilities,
    sec_seccomp,
    sec_host_access,
    sec_read_only_root,
    res_requests_limits,
    res_dedicated,
    probes,
    image_pinned,
    hooks,
    hpa_replicas,
)
