"""Observability checks: is what the chart ships for Prometheus and Grafana sound, and live?

Offline (``ci chart check``): every PrometheusRule passes ``promtool check rules``, its alerts
have unit tests that pass ``promtool test rules``, and every dashboard panel's query parses.
Live (``ci observe check``): every dashboard panel's query returns data from the environment's
Prometheus and every rule group is loaded there without error. ``endpoints`` reaches the APIs
(a URL, or a Service through the API server's proxy), also for the smoke checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ci import artifacts
from ci.config import Config
from ci.manifests import Manifest
from ci.observe.endpoints import Api, Reply, open_api
from ci.observe.live import OBSERVE_FILE, ObserveError, ObserveResult, Probe, check
from ci.observe.objects import Panel, RuleSet, expand, panels, rule_sets

__all__ = [
    "OBSERVE_FILE",
    "Api",
    "ObserveError",
    "ObserveResult",
    "Panel",
    "Probe",
    "Reply",
    "RuleSet",
    "check",
    "expand",
    "open_api",
    "panels",
    "rule_sets",
    "run",
]


def run(
    cfg: Config,
    env_name: str,
    manifests: Sequence[Manifest],
    out_dir: Path,
    *,
    variables: Mapping[str, str],
    deadline: float,
    interval: float,
    on_line: Callable[[str], None] = lambda _line: None,
    api: Api | None = None,
) -> ObserveResult:
    """Check the rendered dashboards and rules against the environment's Prometheus; write
    ``observe.json``. ``api`` replaces the configured endpoint (tests, a port-forward)."""
    env = cfg.environment(env_name)
    api = api or open_api("prometheus", env.observability.prometheus, env)
    result = check(
        api,
        env.name,
        env.namespace,
        panels=panels(manifests),
        rules=rule_sets(manifests),
        variables=variables,
        deadline=deadline,
        interval=interval,
        on_line=on_line,
    )
    result.path = artifacts.write_json(out_dir / OBSERVE_FILE, result.to_json())
    return result
