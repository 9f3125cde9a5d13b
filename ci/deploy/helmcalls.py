"""The Helm calls a deploy makes for one environment (history, render, rollback, ...)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ci import helm as helmlib
from ci import proc
from ci.config import Environment
from ci.deploy.plan import Plan, set_args, string_args
from ci.errors import ProcessError


@dataclass
class Cluster:
    """Helm plus the kubeconfig of one environment: the Helm calls a deploy makes."""

    helm: helmlib.Helm
    env: Environment
    kubeconfig: str | None

    def _scope(self) -> dict[str, Any]:
        return {
            "namespace": self.env.namespace,
            "kube_context": self.env.kube_context,
            "kubeconfig": self.kubeconfig,
        }

    def history(self) -> list[dict[str, Any]]:
        argv = helmlib.history_argv(self.helm, self.env.release, **self._scope())
        result = proc.run(argv, timeout=60, check=False, what="helm history")
        if not result.ok:
            if "not found" in (result.stderr + result.stdout).lower():
                return []
            raise ProcessError(
                f"helm history failed: {proc.tail(result.stderr, 3)}",
                detail=proc.tail(result.stderr),
            )
        data = json.loads(result.stdout or "[]")
        return list(data) if isinstance(data, list) else []

    def manifest(self, revision: int | None = None) -> str:
        """The live release's objects, or those stored with ``revision``; empty when none."""
        argv = helmlib.get_manifest_argv(
            self.helm, self.env.release, revision=revision, **self._scope()
        )
        result = proc.run(argv, timeout=60, check=False, what="helm get manifest")
        return result.stdout if result.ok else ""

    def live_git_sha(self) -> str:
        """The commit the live release was deployed from (its ``deployInfo.gitSha`` value);
        empty when there is no release, or it was deployed without one."""
        argv = helmlib.get_values_argv(self.helm, self.env.release, **self._scope())
        result = proc.run(argv, timeout=60, check=False, what="helm get values")
        return git_sha_of(result.stdout) if result.ok else ""

    def render(self, plan: Plan) -> str:
        return proc.run(self._template_argv(plan), timeout=120, what="helm template").stdout

    def render_live(self, plan: Plan) -> str:
        """``helm template --dry-run=server``: rendered as an upgrade now would render it.

        The chart's ``lookup`` calls (generated Secrets kept across upgrades) read the cluster,
        so an unchanged release renders exactly its live manifest.
        """
        scope = ["--dry-run=server"]
        if self.kubeconfig:
            scope += ["--kubeconfig", self.kubeconfig]
        if self.env.kube_context:
            scope += ["--kube-context", self.env.kube_context]
        argv = (*self._template_argv(plan), *scope)
        return proc.run(argv, timeout=120, what="helm template").stdout

    def _template_argv(self, plan: Plan) -> tuple[str, ...]:
        """``helm template`` of this run's chart, values, ``--set`` pairs and digests."""
        return tuple(
            helmlib.template_argv(
                self.helm,
                plan.chart_dir,
                release=self.env.release,
                namespace=self.env.namespace,
                values=plan.values,
                set_values=set_args(plan),
                set_strings=string_args(plan),
                include_crds=False,
            )
        )

    def live_objects(self, manifest: str) -> list[dict[str, Any]]:
        """The live objects a manifest names, as the API returns them (one ``kubectl get``)."""
        from ci import tools

        kubectl = tools.require("kubectl")
        argv = [str(kubectl.path), "get", "-f", "-", "-o", "json", "--ignore-not-found"]
        argv += ["--namespace", self.env.namespace]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.env.kube_context:
            argv += ["--context", self.env.kube_context]
        out = proc.run(argv, input=manifest, timeout=60, what="kubectl get").stdout
        if not out.strip():
            return []
        data = json.loads(out)
        items = data.get("items", [data]) if isinstance(data, dict) else []
        return [i for i in items if isinstance(i, dict)]

    def rollback(self, revision: int | None) -> None:
        argv = helmlib.rollback_argv(
            self.helm,
            self.env.release,
            revision,
            timeout=f"{self.env.timeout}s",
            **self._scope(),
        )
        proc.run(
            argv,
            timeout=self.env.timeout + 60,
            what="helm rollback",
            grace=self.env.interrupt_grace,
        )

    def uninstall(self) -> None:
        argv = helmlib.uninstall_argv(self.helm, self.env.release, **self._scope())
        proc.run(argv, timeout=self.env.timeout + 60, what="helm uninstall")

    def revision(self) -> int:
        argv = helmlib.status_argv(self.helm, self.env.release, **self._scope())
        data = json.loads(proc.run(argv, timeout=60, what="helm status").stdout)
        return int(data["version"])


def git_sha_of(values_json: str) -> str:
    """``deployInfo.gitSha`` of ``helm get values -o json`` output; empty when absent."""
    try:
        values = json.loads(values_json or "{}")
    except json.JSONDecodeError:
        return ""
    info = values.get("deployInfo") if isinstance(values, dict) else None
    sha = info.get("gitSha") if isinstance(info, dict) else None
    return sha.strip() if isinstance(sha, str) else ""


def history_text(history: list[dict[str, Any]]) -> str:
    """``helm history`` as a few aligned lines for a failure report."""
    lines = ["release history:"]
    for h in sorted(history, key=lambda x: int(x["revision"]))[-6:]:
        lines.append(
            f"    {h.get('revision'):>3}  {h.get('status', ''):<16} {h.get('chart', ''):<22} "
            f"{h.get('updated', '')[:19]}  {h.get('description', '')}"
        )
    return "\n".join(lines)
