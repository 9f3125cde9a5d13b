"""``ci smoke``: the configuration's declarative checks against a deployed environment.

Why declarative: the same list (``smoke.checks`` in ci.yaml) serves every environment and
both the local pipeline and Actions. Each check is retried every ``interval`` until it passes
or the shared ``deadline`` runs out, because a fresh deploy takes a moment to serve (ingress
reload, JIT warm-up); a check that still fails reports the response that failed. Values a check
``save``s from its JSON response (an id) fill ``{name}`` placeholders in later checks, so a
create-then-read round trip can be written as two checks.

After a failure right after a deploy, the environment can be rolled back to the revision
recorded as previous in ``release.json`` (see ``rollback_decision``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ci import artifacts, proc, release, retry
from ci.config import Config, Environment, SmokeCheck
from ci.errors import CiError, ConfigError, SmokeError, first_line
from ci.release import ReleaseRecord

BODY_EXCERPT = 500
REQUEST_TIMEOUT = 10.0
SMOKE_FILE = "smoke.json"

Sink = Callable[[str], None]


def _ignore(_line: str) -> None:
    return None


class MissingVariable(Exception):
    """A ``{name}`` placeholder no earlier check saved."""


# ----------------------------------------------------------------------------- pure logic


_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders from values saved by earlier checks."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in variables:
            raise MissingVariable(m.group(1))
        return variables[m.group(1)]

    return _VAR.sub(sub, text)


def substitute_json(value: Any, variables: Mapping[str, str]) -> Any:
    """``substitute`` in every string of a JSON body."""
    if isinstance(value, str):
        return substitute(value, variables)
    if isinstance(value, list):
        return [substitute_json(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute_json(v, variables) for k, v in value.items()}
    return value


def json_subset(expected: Any, actual: Any, where: str = "$") -> str | None:
    """None when ``actual`` contains ``expected``; else what differs, with its JSON path.

    Mappings match when every expected key matches; lists when every expected item matches
    some actual item; anything else by equality (``1`` and ``"1"`` differ).
    """
    if isinstance(expected, dict):
        return _subset_dict(expected, actual, where)
    if isinstance(expected, list):
        return _subset_list(expected, actual, where)
    if expected != actual or type(expected) is not type(actual):
        return f"{where}: expected {_short(expected)}, got {_short(actual)}"
    return None


def _subset_dict(expected: dict[str, Any], actual: Any, where: str) -> str | None:
    if not isinstance(actual, dict):
        return f"{where}: expected an object, got {_short(actual)}"
    for key, value in expected.items():
        if key not in actual:
            return f"{where}.{key}: missing"
        problem = json_subset(value, actual[key], f"{where}.{key}")
        if problem:
            return problem
    return None


def _subset_list(expected: list[Any], actual: Any, where: str) -> str | None:
    if not isinstance(actual, list):
        return f"{where}: expected a list, got {_short(actual)}"
    for i, item in enumerate(expected):
        if all(json_subset(item, a) is not None for a in actual):
            return f"{where}[{i}]: no item matches {_short(item)}"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def extract(data: Any, dotted: str) -> Any:
    """``a.b.0.c`` out of parsed JSON; ``KeyError`` when the path is absent."""
    node = data
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(dotted)
    return node


@dataclass(frozen=True)
class Verdict:
    """One attempt's outcome."""

    ok: bool
    reason: str = ""
    saved: dict[str, str] = field(default_factory=dict)


def judge(check: SmokeCheck, status: int, body: str) -> Verdict:
    """Does an HTTP response satisfy ``check``? Pure, so unit tests cover every rule."""
    if status != check.expect_status:
        return Verdict(False, f"status {status}, expected {check.expect_status}")
    if check.expect_body is not None and check.expect_body not in body:
        return Verdict(False, f"body does not contain {check.expect_body!r}")
    parsed: Any = None
    if check.expect_json is not None or check.save:
        try:
            parsed = json.loads(body)
        except ValueError:
            return Verdict(False, "response is not JSON")
    if check.expect_json is not None:
        problem = json_subset(check.expect_json, parsed)
        if problem:
            return Verdict(False, f"JSON mismatch: {problem}")
    saved: dict[str, str] = {}
    for var, path in check.save.items():
        try:
            saved[var] = str(extract(parsed, path))
        except KeyError:
            return Verdict(False, f"cannot save {var}: no '{path}' in the response")
    return Verdict(True, saved=saved)


_PHASE = re.compile(r"^Phase:\s+(\w+)", re.MULTILINE)


def judge_helm_test(returncode: int, output: str) -> Verdict:
    """Did ``helm test --logs`` pass?

    A test pod with ``hook-delete-policy: hook-succeeded`` is gone before Helm asks for its
    logs, so Helm exits 1 after every test reported ``Phase: Succeeded``. That is a pass:
    the phases are the verdict, the logs only an aid.
    """
    if returncode == 0:
        return Verdict(True)
    phases = _PHASE.findall(output)
    logs_gone = "unable to get pod logs" in output and "not found" in output
    if phases and all(p == "Succeeded" for p in phases) and logs_gone:
        return Verdict(True)
    failed = [p for p in phases if p != "Succeeded"]
    detail = f" (test phase {failed[0]})" if failed else ""
    return Verdict(False, f"helm test exited {returncode}{detail}")


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


# ----------------------------------------------------------------------------- results


@dataclass
class CheckResult:
    name: str
    type: str
    status: str = "skipped"  # passed | failed | skipped
    attempts: int = 0
    seconds: float = 0.0
    reason: str = ""
    url: str = ""
    http_status: int | None = None
    body: str = ""

    def failure_text(self) -> str:
        """What failed and the response that failed (status, first 500 characters)."""
        head = f"{self.name}: {self.reason}"
        if self.url:
            head += f" ({self.url})"
        if self.http_status is None and not self.body:
            return head
        return f"{head}\nresponse status: {self.http_status}\nresponse body:\n{self.body}"


@dataclass
class SmokeResult:
    env: str
    base_url: str
    checks: list[CheckResult]
    time: str
    duration: float = 0.0
    rollback: str = ""
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return all(c.status == "passed" for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "failed"]

    def raise_if_failed(self) -> None:
        """``SmokeError`` naming the failed checks (and the rollback), their responses as detail."""
        if self.passed:
            return
        names = ", ".join(c.name for c in self.failed)
        extra = f"; {self.rollback}" if self.rollback else ""
        raise SmokeError(
            f"smoke checks failed in {self.env}: {names}{extra}",
            detail="\n\n".join(c.failure_text() for c in self.failed),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "base_url": self.base_url,
            "result": release.SMOKE_PASSED if self.passed else release.SMOKE_FAILED,
            "time": self.time,
            "duration": round(self.duration, 2),
            "rollback": self.rollback,
            "checks": [asdict(c) | {"seconds": round(c.seconds, 2)} for c in self.checks],
        }


# ----------------------------------------------------------------------------- running


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
        on_line: Sink = _ignore,
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

    def run(self, checks: tuple[SmokeCheck, ...] | None = None) -> list[CheckResult]:
        end = self.clock() + self.deadline_s
        results = []
        for check in self.cfg.smoke.checks if checks is None else checks:
            results.append(self._retry(check, end))
        return results

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
        return self._http(check, result)

    def _http(self, check: SmokeCheck, result: CheckResult) -> Verdict:
        import requests

        url = join_url(self.target.base_url, substitute(check.path or "/", self.variables))
        body = substitute_json(check.json, self.variables) if check.json is not None else None
        headers = {"Host": self.target.host_header} if self.target.host_header else {}
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


# ----------------------------------------------------------------------------- rollback


def rollback_decision(
    record: ReleaseRecord | None,
    env: Environment,
    *,
    current_run: str,
    live_revision: int | None,
) -> tuple[int | None, str]:
    """Whether failed checks should roll ``env`` back, and why (not).

    Only right after a deploy: ``release.json`` is this environment's, written by this run,
    not yet smoke-tested, its revision is still the live one, and it recorded a previous
    revision to return to. Anything else is reported, not acted on.
    """
    rules: list[tuple[bool, str]] = [
        (not env.rollback_on_smoke_failure, f"rollback_on_smoke_failure is off for '{env.name}'"),
        (
            record is None or record.env != env.name,
            f"no release.json for '{env.name}' from a deploy in this run",
        ),
    ]
    if record is not None:
        rules += [
            (
                record.run_id != current_run,
                f"release.json is from run {record.run_id}, not this run ({current_run})",
            ),
            (
                record.smoke_result != release.SMOKE_PENDING,
                f"revision {record.revision} was already smoke-tested ({record.smoke_result})",
            ),
            (
                record.previous_revision is None,
                f"revision {record.revision} was the first install; nothing to roll back to",
            ),
            (
                live_revision != record.revision,
                f"live revision is {live_revision}, not the deployed {record.revision}",
            ),
        ]
    for broken, why in rules:
        if broken:
            return None, why
    assert record is not None
    return record.previous_revision, ""


# ----------------------------------------------------------------------------- the step


def base_url_for(env: Environment, override: str | None) -> str:
    url = override or env.base_url
    if not url:
        raise ConfigError(
            f"environment '{env.name}' has no base_url; set it in the configuration "
            "or pass --base-url"
        )
    if not re.match(r"^https?://", url):
        raise ConfigError(f"--base-url {url!r}: expected http:// or https://")
    return url


def run(
    cfg: Config,
    env_name: str,
    out_dir: Path,
    *,
    base_url: str | None = None,
    host_header: str | None = None,
    rollback: bool = True,
    helm_major: int | None = None,
    on_line: Sink = _ignore,
) -> SmokeResult:
    """Run every check; write ``smoke.json``; record the result in ``release.json``."""
    env = cfg.environment(env_name)
    target = Target(env, base_url_for(env, base_url), host_header, helm_major)
    started = time.monotonic()
    runner = Runner(cfg, target, on_line=on_line)
    result = SmokeResult(env.name, target.base_url, runner.run(), release.now())
    result.duration = time.monotonic() - started
    record = _own_record(out_dir, env.name)
    if not result.passed and rollback:
        result.rollback = _maybe_rollback(cfg, env, record, helm_major, on_line)
    result.path = artifacts.write_json(out_dir / SMOKE_FILE, result.to_json())
    if record is not None:
        record.smoke = {
            "result": release.SMOKE_PASSED if result.passed else release.SMOKE_FAILED,
            "time": result.time,
            "failed": [c.name for c in result.failed],
            "rollback": result.rollback,
        }
        release.write_release(record, out_dir)
    return result


def _own_record(out_dir: Path, env: str) -> ReleaseRecord | None:
    path = out_dir / release.RELEASE_FILE
    if not path.is_file():
        return None
    try:
        record = release.read_release(path)
    except CiError:
        return None
    return record if record.env == env else None


def _maybe_rollback(
    cfg: Config,
    env: Environment,
    record: ReleaseRecord | None,
    helm_major: int | None,
    on_line: Sink,
) -> str:
    """Roll back when ``rollback_decision`` allows; return the sentence saying what happened."""
    from ci import deploy

    live: int | None = None
    if record is not None and env.rollback_on_smoke_failure:
        live = _live_revision(env, helm_major)
    revision, why_not = rollback_decision(
        record, env, current_run=release.run_id(), live_revision=live
    )
    if revision is None:
        return f"no rollback: {why_not}"
    on_line(f"smoke checks failed: rolling {env.name} back to revision {revision}")
    try:
        deploy.rollback(cfg, env.name, revision, helm_major=helm_major)
    except CiError as exc:
        return f"rollback to revision {revision} FAILED: {exc.message}"
    return f"rolled back to revision {revision}"


def _live_revision(env: Environment, helm_major: int | None) -> int | None:
    from ci import deploy, kube
    from ci import helm as helmlib

    try:
        helm = helmlib.find(helm_major)
        with kube.access(env) as acc:
            return deploy.Cluster(helm, env, acc.kubeconfig).revision()
    except (CiError, ValueError, KeyError):
        return None
