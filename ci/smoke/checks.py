"""Does a response satisfy a check? Placeholders, JSON subsets, saved values, helm test output.

Pure functions, so unit tests cover every rule without a deployed application.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ci.config import SmokeCheck


class MissingVariable(Exception):
    """A ``{name}`` placeholder no earlier check saved."""


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
