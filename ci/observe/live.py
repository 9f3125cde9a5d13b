"""``ci observe check``: do the shipped dashboards and rules work against a live Prometheus?

Why: a dashboard whose panels stay empty and a rule Prometheus refuses both look fine in review
and fail the first incident. After smoke traffic, every panel's query must return a sample
(NaN alone is no data: a latency quantile over no requests) and every rule group the chart
ships must be loaded, each rule evaluated without error. Prometheus needs a scrape and an
evaluation interval to catch up, so what is not there yet is asked again until the deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ci import retry
from ci.errors import CiError
from ci.observe.endpoints import Api
from ci.observe.objects import Panel, RuleSet, expand
from ci.observe.prometheus import prometheus_problem, samples, series_text

OBSERVE_FILE = "observe.json"


class ObserveError(CiError):
    """A dashboard panel without data, or a rule Prometheus did not load or cannot evaluate."""


@dataclass
class Probe:
    """One thing asked of Prometheus: a panel's query, or one rule of a shipped group."""

    kind: str  # panel | rule
    name: str
    query: str
    status: str = "failed"  # passed | failed
    reason: str = "not asked"
    attempts: int = 0
    seen: str = ""


@dataclass
class ObserveResult:
    env: str
    prometheus: str
    probes: list[Probe]
    time: str
    duration: float = 0.0
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return all(p.status == "passed" for p in self.probes)

    @property
    def failed(self) -> list[Probe]:
        return [p for p in self.probes if p.status != "passed"]

    def raise_if_failed(self) -> None:
        """``ObserveError`` naming what failed; each query, reason and answer as detail."""
        if self.passed:
            return
        names = ", ".join(p.name for p in self.failed)
        detail = "\n\n".join(
            f"{p.name}: {p.reason}\nquery: {p.query}" + (f"\nanswer:\n{p.seen}" if p.seen else "")
            for p in self.failed
        )
        raise ObserveError(f"observe check failed in {self.env}: {names}", detail=detail)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "prometheus": self.prometheus,
            "result": "passed" if self.passed else "failed",
            "time": self.time,
            "duration": round(self.duration, 2),
            "probes": [asdict(p) for p in self.probes],
        }


# ----------------------------------------------------------------------------- judging


def judge_panel(probe: Probe, reply: Any) -> None:
    """A panel passes when its query returns at least one sample that is a number."""
    problem, data = prometheus_problem(reply)
    if problem:
        probe.status, probe.reason, probe.seen = "failed", problem, reply.text[:300]
        return
    found = samples(data)
    probe.seen = "\n".join(series_text(labels, value) for labels, value in found[:5])
    if not found:
        probe.status, probe.reason = "failed", "no data: the query returned no sample"
    elif all(math.isnan(value) for _, value in found):
        probe.status, probe.reason = "failed", "no data: every sample is NaN"
    else:
        probe.status, probe.reason = "passed", f"{len(found)} sample(s)"


@dataclass(frozen=True)
class LoadedGroup:
    name: str
    file: str
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)


def loaded_groups(data: Any) -> list[LoadedGroup]:
    """The rule groups of a ``/api/v1/rules`` answer, each rule by its alert or record name."""
    out = []
    for group in (data or {}).get("groups") or []:
        rules = {str(r.get("name")): r for r in group.get("rules") or []}
        out.append(LoadedGroup(str(group.get("name")), str(group.get("file", "")), rules))
    return out


def find_group(
    groups: Sequence[LoadedGroup], name: str, namespace: str, rule_set: str
) -> LoadedGroup | None:
    """The loaded group ``name`` of this PrometheusRule: the operator names its file
    ``NAMESPACE-NAME-UID.yaml``; another setup's group of that name is the fallback."""
    same = [g for g in groups if g.name == name]
    own = [g for g in same if f"{namespace}-{rule_set}-" in Path(g.file).name]
    return (own or same)[0] if same else None


def judge_rule(probe: Probe, group: LoadedGroup | None, rule: str) -> None:
    if group is None:
        probe.status, probe.reason = "failed", "rule group not loaded by Prometheus"
        return
    loaded = group.rules.get(rule)
    if loaded is None:
        probe.status, probe.reason = "failed", f"rule not in the loaded group ({group.file})"
        return
    health = loaded.get("health")
    probe.seen = f"health {health}, last evaluation {loaded.get('lastEvaluation', '?')}"
    if health == "ok":
        probe.status, probe.reason = "passed", f"loaded from {group.file or 'a rule file'}"
    elif health == "err":
        probe.status, probe.reason = "failed", f"evaluation error: {loaded.get('lastError')}"
    else:
        probe.status, probe.reason = "failed", "not evaluated yet"


# ----------------------------------------------------------------------------- the check


def probes_for(
    panels: Sequence[Panel], rules: Sequence[RuleSet], variables: Mapping[str, str]
) -> list[Probe]:
    """What to ask: each panel's query with its variables filled in, each shipped rule."""
    out = [Probe("panel", p.ref, expand(p.expr, p.variables, variables)) for p in panels]
    for rs in rules:
        for group in rs.groups:
            for rule in group.get("rules") or []:
                name = str(rule.get("alert") or rule.get("record"))
                out.append(
                    Probe("rule", f"{rs.name}/{group.get('name')}/{name}", str(rule["expr"]))
                )
    return out


def check(
    api: Api,
    env: str,
    namespace: str,
    *,
    panels: Sequence[Panel],
    rules: Sequence[RuleSet],
    variables: Mapping[str, str],
    deadline: float,
    interval: float,
    on_line: Callable[[str], None] = lambda _line: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ObserveResult:
    """Ask Prometheus about every panel and rule, again for those failing, until ``deadline``."""
    from ci import release

    started = clock()
    probes = probes_for(panels, rules, {"namespace": namespace, **variables})
    groups = {
        p.name: (rs.name, str(g.get("name")))
        for rs in rules
        for g in rs.groups
        for p in probes
        if p.kind == "rule" and p.name.startswith(f"{rs.name}/{g.get('name')}/")
    }

    def attempt() -> list[Probe]:
        pending = [p for p in probes if p.status != "passed"]
        loaded = _rules(api) if any(p.kind == "rule" for p in pending) else []
        for probe in pending:
            probe.attempts += 1
            if probe.kind == "panel":
                judge_panel(probe, api.get("/api/v1/query", {"query": probe.query}))
            elif isinstance(loaded, str):
                probe.status, probe.reason = "failed", loaded
            else:
                rule_set, group = groups[probe.name]
                found = find_group(loaded, group, namespace, rule_set)
                judge_rule(probe, found, probe.name.rsplit("/", 1)[1])
        return [p for p in probes if p.status != "passed"]

    def retrying(failing: list[Probe]) -> None:
        on_line(
            f"  {len(failing)} not there yet ({failing[0].name}: {failing[0].reason}); retrying"
        )

    retry.poll(
        attempt,
        ok=lambda failing: not failing,
        until=started + deadline,
        interval=interval,
        on_retry=retrying,
        clock=clock,
        sleep=sleep,
    )
    result = ObserveResult(env, api.base, probes, release.now())
    result.duration = clock() - started
    return result


def _rules(api: Api) -> list[LoadedGroup] | str:
    """The loaded rule groups, or why Prometheus did not list them."""
    reply = api.get("/api/v1/rules")
    problem, data = prometheus_problem(reply)
    return problem if problem else loaded_groups(data)
