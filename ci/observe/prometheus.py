"""Reading Prometheus HTTP API answers (``/api/v1/query``, ``/api/v1/rules``).

Shared by the smoke ``metrics`` check and ``ci observe check``: whether an answer is a success,
the samples of a query's result, and how a series reads in a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ci.observe.endpoints import Reply


def _number(text: Any) -> float:
    return float(text)  # Prometheus sends "NaN", "+Inf" and decimals as strings


def samples(data: Any) -> list[tuple[dict[str, str], float]]:
    """The (labels, value) pairs of a ``/api/v1/query`` answer; a range answer's last values."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [({}, _number(result[1]))]
    if kind == "vector":
        return [(r.get("metric", {}), _number(r["value"][1])) for r in result]
    if kind == "matrix":
        return [(r.get("metric", {}), _number(r["values"][-1][1])) for r in result if r["values"]]
    return []


def series_text(labels: Mapping[str, str], value: float) -> str:
    name = labels.get("__name__", "")
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    return f"{name}{{{inner}}} {value:g}"


def prometheus_problem(reply: Reply) -> tuple[str | None, Any]:
    """Why a Prometheus API reply is not a success (None when it is), and its ``data``."""
    if reply.error:
        return reply.error, None
    doc = reply.json()
    if not isinstance(doc, dict):
        return f"status {reply.status}, response is not Prometheus JSON", None
    if doc.get("status") != "success":
        return f"Prometheus {doc.get('errorType', 'error')}: {doc.get('error', reply.status)}", None
    return None, doc.get("data")
