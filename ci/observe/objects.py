"""What a rendered chart ships for observability: dashboard panels' queries and PrometheusRules.

Pure functions on the rendered objects, so the offline and the live checks read the same
things: a Grafana dashboard is any ConfigMap value that is dashboard JSON (the sidecar
convention), and a rule file is the ``spec`` of a PrometheusRule, the Prometheus Operator's
wrapper around one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ci.manifests import Manifest

#: Grafana's own variables, and values that keep a query valid and meaningful when run.
BUILTIN_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $name, ${name}, ${name:format}, [[name]], [[name:format]]
_VARIABLE = re.compile(r"\$\{(?P<b>\w+)(?::[^}]*)?\}|\[\[(?P<k>\w+)(?::[^\]]*)?\]\]|\$(?P<d>\w+)")


@dataclass(frozen=True)
class Panel:
    """One query of one dashboard panel, and the template variables of its dashboard."""

    dashboard: str
    title: str
    expr: str
    source: str
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"dashboard {self.dashboard!r}, panel {self.title!r}"


@dataclass(frozen=True)
class RuleSet:
    """One PrometheusRule: its rule groups as a Prometheus rule file holds them."""

    manifest: Manifest
    groups: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.manifest.name

    def rule_file(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def alerts(self) -> list[str]:
        return [str(r["alert"]) for g in self.groups for r in g.get("rules") or [] if "alert" in r]


def rule_sets(manifests: Iterable[Manifest]) -> list[RuleSet]:
    """Every PrometheusRule among ``manifests``."""
    out = []
    for m in manifests:
        if m.kind == "PrometheusRule":
            spec = m.obj.get("spec") or {}
            out.append(RuleSet(m, list(spec.get("groups") or [])))
    return out


def panels(manifests: Iterable[Manifest]) -> list[Panel]:
    """Every Prometheus query of every dashboard shipped in a ConfigMap."""
    out: list[Panel] = []
    for m in manifests:
        if m.kind != "ConfigMap":
            continue
        for value in (m.obj.get("data") or {}).values():
            board = _dashboard(value)
            if board is not None:
                out += dashboard_panels(board, m.source)
    return out


def _dashboard(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("panels"), list) else None


def dashboard_panels(board: Mapping[str, Any], source: str) -> list[Panel]:
    """The queries of a dashboard's panels, rows' nested panels included; hidden ones skipped."""
    title = str(board.get("title") or board.get("uid") or "?")
    variables = template_variables(board)
    out = []
    for panel in _walk(board.get("panels") or []):
        if not _prometheus(panel.get("datasource")):
            continue
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr and not target.get("hide") and _prometheus(target.get("datasource")):
                name = str(panel.get("title") or f"#{panel.get('id', '?')}")
                out.append(Panel(title, name, str(expr), source, variables))
    return out


def _walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk(item.get("panels") or [])


def _prometheus(datasource: Any) -> bool:
    """True unless the datasource is known to be something else (Loki, Tempo...)."""
    if isinstance(datasource, dict):
        return datasource.get("type") in (None, "prometheus", "datasource", "-- Mixed --")
    return True


def template_variables(board: Mapping[str, Any]) -> dict[str, str]:
    """Each dashboard variable's current (else first) value; "All" becomes a match-all regex."""
    out: dict[str, str] = {}
    for var in (board.get("templating") or {}).get("list") or []:
        name = var.get("name")
        if not name:
            continue
        value = (var.get("current") or {}).get("value")
        if value in (None, "", []) and var.get("options"):
            value = var["options"][0].get("value")
        if isinstance(value, list):
            value = "|".join(str(v) for v in value)
        if value in (None, "", "$__all"):
            value = ".+" if var.get("type") != "interval" else "5m"
        out[str(name)] = str(value)
    return out


def expand(
    expr: str, variables: Mapping[str, str], overrides: Mapping[str, str] | None = None
) -> str:
    """``expr`` with Grafana's variables replaced: ``overrides``, then the dashboard's, then
    Grafana's built-ins; an unknown variable becomes ``.+`` (it can only be a label value)."""
    values = {**BUILTIN_VARIABLES, **variables, **(overrides or {})}

    def sub(m: re.Match[str]) -> str:
        name = m.group("b") or m.group("k") or m.group("d")
        return values.get(name, ".+")

    return _VARIABLE.sub(sub, expr)
