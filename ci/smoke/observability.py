"""The metrics, trace and logs checks: does Prometheus, Jaeger or the log store show the release?

Why in the smoke run: an application can answer HTTP and still be blind (no spans exported, no
scrape target, no log shipping). Every HTTP check's request carries a W3C ``traceparent`` with
a trace id generated here, so a later ``trace`` check can wait for that exact trace in Jaeger
and a ``logs`` check can look for the line that carries it. The judging functions are pure (a
reply in, a verdict out); ``attempt`` asks the API once.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from ci.config import SmokeCheck
from ci.observe.endpoints import Api, Reply
from ci.observe.prometheus import prometheus_problem, samples, series_text
from ci.smoke.checks import Verdict, substitute
from ci.smoke.results import CheckResult

BODY_EXCERPT = 500
LOG_LIMIT = 20

#: Which API each check type asks.
API_OF = {"metrics": "prometheus", "trace": "jaeger", "logs": "logs"}


def new_traceparent() -> tuple[str, str]:
    """A fresh trace id and the W3C ``traceparent`` header that starts it (sampled)."""
    trace_id = secrets.token_hex(16)
    while trace_id == "0" * 32:  # all-zero ids are invalid
        trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


# ----------------------------------------------------------------------------- metrics


def judge_metrics(check: SmokeCheck, reply: Reply) -> tuple[Verdict, str]:
    """Did the query return a sample, every one within ``min``/``max``? And what came back."""
    problem, data = prometheus_problem(reply)
    if problem:
        return Verdict(False, problem), reply.text[:BODY_EXCERPT]
    found = samples(data)
    shown = "\n".join(series_text(labels, value) for labels, value in found[:10])
    if not found:
        return Verdict(False, "query returned no sample"), "(no sample)"
    for labels, value in found:
        if check.min is not None and not value >= check.min:
            return Verdict(False, f"{series_text(labels, value)} is below min {check.min:g}"), shown
        if check.max is not None and not value <= check.max:
            return Verdict(False, f"{series_text(labels, value)} is above max {check.max:g}"), shown
    return Verdict(True), shown


# ----------------------------------------------------------------------------- traces


def spans(doc: Any) -> list[tuple[str, str]]:
    """(service, operation) of every span in a Jaeger ``/api/traces/{id}`` answer."""
    out = []
    for trace in (doc or {}).get("data") or []:
        processes = trace.get("processes") or {}
        for span in trace.get("spans") or []:
            service = (processes.get(span.get("processID")) or {}).get("serviceName", "?")
            out.append((service, span.get("operationName", "")))
    return out


def _matches(want: Mapping[str, str], service: str, operation: str) -> bool:
    if "service" in want and want["service"] != service:
        return False
    return "operation" not in want or re.search(want["operation"], operation) is not None


def _want_text(want: Mapping[str, str]) -> str:
    parts = [f"service {want['service']}"] if "service" in want else []
    parts += [f"operation ~ /{want['operation']}/"] if "operation" in want else []
    return " with ".join(parts)


def judge_trace(check: SmokeCheck, trace_id: str, reply: Reply) -> tuple[Verdict, str]:
    """Is the trace in Jaeger, with a span for each of ``expect_spans``? And its spans."""
    if reply.error:
        return Verdict(False, reply.error), ""
    found = spans(reply.json()) if reply.status == 200 else []
    if not found:
        text = reply.text[:BODY_EXCERPT]
        return Verdict(False, f"trace {trace_id} is not in Jaeger (status {reply.status})"), text
    shown = "\n".join(f"{svc}: {op}" for svc, op in found[:30])
    for want in check.expect_spans:
        try:
            re.compile(want.get("operation", ""))
        except re.error as exc:
            return Verdict(False, f"operation pattern {want['operation']!r}: {exc}"), shown
        if not any(_matches(want, svc, op) for svc, op in found):
            why = f"trace {trace_id} has {len(found)} span(s), none from {_want_text(want)}"
            return Verdict(False, why), shown
    return Verdict(True), shown


# ----------------------------------------------------------------------------- logs


def log_lines(kind: str, reply: Reply) -> list[str]:
    """The records a log store returned: VictoriaLogs' JSON lines, or Loki's stream values."""
    if kind == "loki":
        doc = reply.json() or {}
        result = (doc.get("data") or {}).get("result") or []
        return [line for stream in result for _ts, line in stream.get("values", [])]
    return [line for line in reply.text.splitlines() if line.strip()]


def judge_logs(check: SmokeCheck, kind: str, reply: Reply) -> tuple[Verdict, str]:
    """Did the query match a record (one containing ``expect_body``, when set)?"""
    if reply.error:
        return Verdict(False, reply.error), ""
    if reply.status != 200:
        return Verdict(False, f"log store answered status {reply.status}"), reply.text[:500]
    lines = log_lines(kind, reply)
    shown = "\n".join(lines[:5])[:BODY_EXCERPT]
    if not lines:
        return Verdict(False, "query matched no log record"), "(no record)"
    if check.expect_body is not None and not any(check.expect_body in line for line in lines):
        return Verdict(False, f"no matched record contains {check.expect_body!r}"), shown
    return Verdict(True), shown


def logs_request(kind: str, query: str, since: int, now: float) -> tuple[str, dict[str, str]]:
    """The path and parameters of a query over the last ``since`` seconds."""
    if kind == "loki":
        end = int(now * 1e9)
        params = {"query": query, "limit": str(LOG_LIMIT), "direction": "backward"}
        return "/loki/api/v1/query_range", {
            **params,
            "start": str(end - since * 10**9),
            "end": str(end),
        }
    return "/select/logsql/query", {"query": f"_time:{since}s {query}", "limit": str(LOG_LIMIT)}


# ----------------------------------------------------------------------------- one attempt


def attempt(
    check: SmokeCheck,
    result: CheckResult,
    api: Api,
    variables: Mapping[str, str],
    trace_id: str | None,
    *,
    now: Callable[[], float] = time.time,
) -> Verdict:
    """Ask the check's API once and judge the answer; ``result`` keeps what was asked and seen."""
    values = dict(variables) | ({"trace_id": trace_id} if trace_id else {})
    if check.type == "trace":
        if not trace_id:
            return Verdict(False, "no HTTP check ran before it, so there is no trace to look for")
        result.trace_id = trace_id
        reply = api.get(f"/api/traces/{trace_id}")
        verdict, seen = judge_trace(check, trace_id, reply)
    elif check.type == "metrics":
        reply = api.get("/api/v1/query", {"query": substitute(check.query or "", values)})
        verdict, seen = judge_metrics(check, reply)
    else:
        kind = api.kind or "victorialogs"
        query = substitute(check.query or "", values)
        path, params = logs_request(kind, query, check.since, now())
        reply = api.get(path, params)
        verdict, seen = judge_logs(check, kind, reply)
    result.url, result.http_status, result.body = reply.asked, reply.status, seen
    return verdict
