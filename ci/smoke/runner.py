"""Run the checks in order against one target, each retried until the shared deadline.

Why retried: a fresh deploy takes a moment to serve (ingress reload, JIT warm-up), so a check
is tried every ``interval`` until it passes or the run's one ``deadline`` runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ci import proc, retry
from ci.config import Config, Environment, SmokeCheck
from ci.errors import CiError, first_line
from ci.observe.endpoints import Api, open_api
from ci.smoke import observability
from ci.smoke.checks import (
    MissingVariable,
    Verdict,
    join_url,
    judge,
    judge_helm_test,
    substitute,
    substitute_json,
)
from ci.smoke.results import CheckResult

BODY_EXCERPT = 500
REQUEST_TIMEOUT = 10.0

Sink = Callable[[str], None]


def ignore_line(_line: str) -> None:
    """The default sink: say nothing (only the CLI prints)."""
    return None


@dataclass
class Target:
    """Where the checks go: base URL, optional Host header, and the release for helm test."""

    env: Environment
    base_url: str
    host_header: str | None = None
    helm_major: int | None = None


class Runner:
    """Runs the checks in order against one target, sharing one deadline."""

    def __init__(
        self,
        cfg: Config,
        target: Target,
        *,
        deadline: float | None = None,
        interval: float | None = None,
        on_line: Sink = ignore_line,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        self.cfg = cfg
        self.target = target
        self.deadline_s = cfg.smoke.deadline if deadline is None else deadline
        self.interval = cfg.smoke.interval if interval is None else interval
        self.on_line = on_line
        self.clock = clock
        self.sleep = sleep
        self.session = requests.Session()
        self.variables: dict[str, str] = {}
        #: The trace id of each HTTP check's last request, and the latest of them.
        self.traces: dict[str, str] = {}
        self.last_trace: str | None = None
        self.apis: dict[str, Api] = {}

    def run(self, checks: tuple[SmokeCheck, ...] | None = None) -> list[CheckResult]:
        """Every check of this environment, results in the configured order.

        A ``helm-test`` check waits on a pod's whole life (its start and end reach the API
        through the kubelet's status updates, seconds apart) and shares no saved value or
        trace with the others, so it runs beside them and is reported in its place.
        """
        end = self.clock() + self.deadline_s
        env = self.target.env.name
        chosen = [
            c for c in (self.cfg.smoke.checks if checks is None else checks) if c.runs_in(env)
        ]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="helm-test") as pool:
            beside = {
                i: pool.submit(self._retry, c, end)
                for i, c in enumerate(chosen)
                if c.type == "helm-test"
            }
            inline = {i: self._retry(c, end) for i, c in enumerate(chosen) if i not in beside}
            return [beside[i].result() if i in beside else inline[i] for i in range(len(chosen))]

    def _retry(self, check: SmokeCheck, end: float) -> CheckResult:
        """Attempt ``check`` every ``interval`` until it passes or ``end`` (the shared deadline)."""
        result = CheckResult(check.name, check.type)
        started = self.clock()

        def attempt() -> Verdict:
            result.attempts += 1
            return self._attempt(check, result)

        def retrying(verdict: Verdict) -> None:
            self.on_line(f"  {check.name}: {verdict.reason}; retrying")

        try:
            verdict = retry.poll(
                attempt,
                ok=lambda v: v.ok,
                until=end,
                interval=self.interval,
                on_retry=retrying,
                clock=self.clock,
                sleep=self.sleep,
            )
        except MissingVariable as exc:
            result.status, result.reason = "failed", f"no saved value for {{{exc}}}"
        else:
            if verdict.ok:
                self.variables.update(verdict.saved)
            result.status = "passed" if verdict.ok else "failed"
            result.reason = verdict.reason
        result.seconds = self.clock() - started
        self.on_line(f"{check.name}: {result.status} after {result.attempts} attempt(s)")
        return result

    def _attempt(self, check: SmokeCheck, result: CheckResult) -> Verdict:
        if check.type == "helm-test":
            return self._helm_test(result)
        if check.type in observability.API_OF:
            return self._observed(check, result)
        return self._http(check, result)

    def _observed(self, check: SmokeCheck, result: CheckResult) -> Verdict:
        """A metrics, trace or logs check: ask Prometheus, Jaeger or the log store once."""
        trace_id = self.traces.get(check.request) if check.request else self.last_trace
        if check.request and trace_id is None:
            return Verdict(False, f"no HTTP check named '{check.request}' ran before it")
        try:
            api = self.api(check.type)
        except CiError as exc:  # no kubeconfig, no credentials: the check cannot pass
            result.url = f"{observability.API_OF[check.type]} API"
            return Verdict(False, f"cannot reach the {result.url}: {exc.message}")
        env = self.target.env
        values = {"namespace": env.namespace, "release": env.release, **self.variables}
        return observability.attempt(check, result, api, values, trace_id)

    def api(self, check_type: str) -> Api:
        """The API a check type asks, opened once per run (the service proxy needs credentials)."""
        name = observability.API_OF[check_type]
        if name not in self.apis:
            endpoint = getattr(self.target.env.observability, name)
            self.apis[name] = open_api(name, endpoint, self.target.env)
        return self.apis[name]

    def _http(self, check: SmokeCheck, result: CheckResult) -> Verdict:
        import requests

        url = join_url(self.target.base_url, substitute(check.path or "/", self.variables))
        body = substitute_json(check.json, self.variables) if check.json is not None else None
        headers = {"Host": self.target.host_header} if self.target.host_header else {}
        trace_id, headers["traceparent"] = observability.new_traceparent()
        self.traces[check.name] = self.last_trace = result.trace_id = trace_id
        result.url = f"{check.method} {url}"
        try:
            resp = self.session.request(
                check.method, url, json=body, headers=headers, timeout=REQUEST_TIMEOUT
            )
        except requests.RequestException as exc:
            result.http_status, result.body = None, ""
            return Verdict(False, f"request failed: {first_line(exc)}")
        result.http_status, result.body = resp.status_code, resp.text[:BODY_EXCERPT]
        return judge(check, resp.status_code, resp.text)

    def _helm_test(self, result: CheckResult) -> Verdict:
        from ci import helm as helmlib
        from ci import kube

        env = self.target.env
        helm = helmlib.find(self.target.helm_major)
        with kube.access(env) as acc:
            argv = helmlib.helm_test_argv(
                helm,
                env.release,
                namespace=env.namespace,
                timeout="120s",
                kube_context=env.kube_context,
                kubeconfig=acc.kubeconfig,
            )
            done = proc.run(argv, timeout=180, check=False, what="helm test")
        result.url = f"helm test {env.release} -n {env.namespace}"
        output = (done.stdout + done.stderr).strip()
        result.http_status, result.body = None, output[-BODY_EXCERPT:]
        return judge_helm_test(done.returncode, output)
