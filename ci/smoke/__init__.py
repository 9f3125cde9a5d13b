"""``ci smoke``: the configuration's declarative checks against a deployed environment.

Why declarative: the same list (``smoke.checks`` in ci.yaml) serves every environment and
both the local pipeline and Actions. Each check is retried every ``interval`` until it passes
or the shared ``deadline`` runs out, because a fresh deploy takes a moment to serve (ingress
reload, JIT warm-up); a check that still fails reports the response that failed. Values a check
``save``s from its JSON response (an id) fill ``{name}`` placeholders in later checks, so a
create-then-read round trip can be written as two checks.

Every HTTP check's request carries a W3C ``traceparent`` with a fresh trace id, so that
``metrics``, ``trace`` and ``logs`` checks can ask Prometheus, Jaeger and the log store whether
the release is observable, down to that request's trace and log line.

The parts: ``checks`` (pure judging of responses), ``observability`` (the metrics, trace and
logs checks), ``results`` (what was found), ``runner`` (retrying the checks against a target)
and ``step`` (the command: results, record, rollback).
The names the rest of the toolkit uses are importable from ``ci.smoke``.
"""

from __future__ import annotations

from ci.smoke.checks import (
    MissingVariable,
    Verdict,
    extract,
    join_url,
    json_subset,
    judge,
    judge_helm_test,
    substitute,
    substitute_json,
)
from ci.smoke.results import CheckResult, SmokeResult
from ci.smoke.runner import BODY_EXCERPT, REQUEST_TIMEOUT, Runner, Sink, Target
from ci.smoke.step import SMOKE_FILE, base_url_for, rollback_decision, run

__all__ = [
    "BODY_EXCERPT",
    "REQUEST_TIMEOUT",
    "SMOKE_FILE",
    "CheckResult",
    "MissingVariable",
    "Runner",
    "Sink",
    "SmokeResult",
    "Target",
    "Verdict",
    "base_url_for",
    "extract",
    "join_url",
    "json_subset",
    "judge",
    "judge_helm_test",
    "rollback_decision",
    "run",
    "substitute",
    "substitute_json",
]
