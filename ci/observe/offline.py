"""``ci chart check``'s observability part: promtool on what one environment renders.

Why promtool: it is Prometheus' own parser and rule evaluator (pinned to the version the local
cluster runs), so a rule file it accepts is one Prometheus loads, and ``promtool test rules``
runs alert unit tests on synthetic series without any server. Checks, each a finding:

- OBS001 a PrometheusRule fails ``promtool check rules``;
- OBS002 an alert has no unit test (no ``alert_rule_test`` names it);
- OBS003 a unit test file fails ``promtool test rules``;
- OBS004 a dashboard panel's query does not parse (``promtool promql format``);
- OBS005 (a warning) a panel applies ``rate()``, ``irate()`` or ``increase()`` to a series
  whose name is not a counter's (``_total``, ``_count``, ``_sum``, ``_bucket``): a gauge's
  rate means nothing, and only the naming convention can tell them apart offline;
- OBS006 an alert's tests never expect it to fire, or never expect it to stay quiet
  (``exp_alerts: []``): an alert that always fires passes the first kind of test, one that
  never fires the second, so each needs both.

Unit tests are promtool test files in the chart's ``alert-tests/`` folder. Their ``rule_files``
are replaced by the environment's rendered PrometheusRules, since the rules exist as files only
once Helm has rendered them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci import proc
from ci.config import Config
from ci.manifests import WARNING, Finding, Manifest, load_yaml
from ci.observe.objects import Panel, RuleSet, expand, panels, rule_sets

_RATE_OF = re.compile(r"\b(rate|irate|increase)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*[{\[]")
_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


def gauge_rates(expr: str) -> list[tuple[str, str]]:
    """(function, series) pairs where a counter function is applied to a non-counter name."""
    return [
        (fn, name) for fn, name in _RATE_OF.findall(expr) if not name.endswith(_COUNTER_SUFFIXES)
    ]


#: The chart folder holding promtool unit test files (``*.yaml``) for its alert rules.
ALERT_TESTS = "alert-tests"
MESSAGE_LIMIT = 600


@dataclass(frozen=True)
class Where:
    """Which file a person edits for a problem, relative to the project root, and its line.

    A template is named by Helm's ``# Source: chart/templates/x.yaml``; a dashboard panel is
    looked up in the chart's JSON files (a ConfigMap usually reads them with ``.Files.Get``).
    """

    chart: Path
    root: Path

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def template(self, source: str) -> Path:
        return self.chart / source.partition("/")[2]

    def finding(self, rule: str, message: str, path: Path, needle: str | None, env: str) -> Finding:
        return Finding(rule, message, self.rel(path), _line(path, needle), env)

    def panel_file(self, panel: Panel) -> tuple[Path, str]:
        """The chart's JSON file holding the panel's query (else its template), and the needle."""
        needle = json.dumps(panel.expr)[1:-1]
        for path in sorted(self.chart.rglob("*.json")):
            if needle in path.read_text(encoding="utf-8", errors="replace"):
                return path, needle
        return self.template(panel.source), needle


def _line(path: Path, needle: str | None) -> int | None:
    if not needle:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((n for n, line in enumerate(lines, start=1) if needle in line), None)


def test_files(chart: Path) -> list[Path]:
    """The chart's promtool unit test files."""
    folder = chart / ALERT_TESTS
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []


def _short(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = "; ".join(lines)
    return joined if len(joined) <= MESSAGE_LIMIT else joined[: MESSAGE_LIMIT - 3] + "..."


def check_rules(promtool: Path, rules: Sequence[RuleSet], work: Path) -> dict[str, str]:
    """Write each rule set as a rule file under ``work``; the promtool errors of each bad one."""
    problems = {}
    for rs in rules:
        path = work / f"{rs.name}.yaml"
        path.write_text(yaml.safe_dump(rs.rule_file(), sort_keys=False), encoding="utf-8")
        done = proc.run(
            (str(promtool), "check", "rules", str(path)),
            check=False,
            timeout=60,
            what="promtool check rules",
        )
        if not done.ok:
            text = (done.stdout + "\n" + done.stderr).replace(str(path), path.name)
            kept = [ln for ln in text.splitlines() if not ln.startswith("Checking ")]
            problems[rs.name] = _short("\n".join(kept))
    return problems


def untested(rules: Sequence[RuleSet], tests: Iterable[Path]) -> list[tuple[RuleSet, str]]:
    """Alerts no test file's ``alert_rule_test`` names."""
    named: set[str] = set()
    for path in tests:
        doc = _load(path)
        for test in doc.get("tests") or []:
            for art in test.get("alert_rule_test") or []:
                named.add(str(art.get("alertname")))
    return [(rs, alert) for rs in rules for alert in rs.alerts() if alert not in named]


def one_sided(rules: Sequence[RuleSet], tests: Iterable[Path]) -> list[tuple[RuleSet, str, str]]:
    """Alerts tested only firing or only quiet: (rule set, alert, the missing kind of case).

    An alert with no test at all is OBS002's, not listed here.
    """
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in tests:
        for test in _load(path).get("tests") or []:
            for art in test.get("alert_rule_test") or []:
                (firing if art.get("exp_alerts") else quiet).add(str(art.get("alertname")))
    out = []
    for rs in rules:
        for alert in rs.alerts():
            if alert in firing and alert not in quiet:
                out.append((rs, alert, "quiet"))
            elif alert in quiet and alert not in firing:
                out.append((rs, alert, "firing"))
    return out


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def run_tests(
    promtool: Path, rule_files: Sequence[Path], tests: Sequence[Path], work: Path
) -> dict[Path, str]:
    """``promtool test rules`` on each test file, its ``rule_files`` pointed at ``rule_files``.

    The files run side by side (each is its own promtool), and a file already run against
    the same rules is answered from memory: environments usually render identical rules.
    """
    digest = hashlib.sha256()
    for f in rule_files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    rules_key = digest.hexdigest()
    with ThreadPoolExecutor(max_workers=max(len(tests), 1)) as pool:
        found = pool.map(lambda t: _test_problem(promtool, rule_files, rules_key, t, work), tests)
        return {path: problem for path, problem in zip(tests, found, strict=True) if problem}


_TestKey = tuple[str, str, str]
_tested: dict[_TestKey, str | None] = {}
#: One lock per test and rules: environments are checked side by side, and the second
#: environment with the same rules waits for the first one's answer instead of running again.
_testing: dict[_TestKey, threading.Lock] = {}
_testing_lock = threading.Lock()


def _test_problem(
    promtool: Path, rule_files: Sequence[Path], rules_key: str, path: Path, work: Path
) -> str | None:
    """Why one test file fails against the rules (None when it passes), asked once."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    key = (str(promtool), rules_key, text)
    with _testing_lock:
        lock = _testing.setdefault(key, threading.Lock())
    with lock:
        if key not in _tested:
            _tested[key] = _run_test(promtool, rule_files, path, work)
        return _tested[key]


def _run_test(promtool: Path, rule_files: Sequence[Path], path: Path, work: Path) -> str | None:
    """``promtool test rules`` on a copy of ``path`` whose ``rule_files`` are ``rule_files``."""
    doc = _load(path)
    if not doc:
        return "not a promtool test file (a YAML mapping with tests:)"
    doc["rule_files"] = [str(f) for f in rule_files]
    copy = work / f"test-{path.name}"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    done = proc.run(
        (str(promtool), "test", "rules", str(copy)),
        check=False,
        timeout=120,
        what="promtool test rules",
    )
    problem = None
    if not done.ok:
        text_out = (done.stdout + "\n" + done.stderr).replace(str(work) + "/", "")
        kept = [ln for ln in text_out.splitlines() if ln.strip() and "Unit Testing:" not in ln]
        problem = _short("\n".join(kept))
    return problem


_parsed: dict[tuple[str, str], str | None] = {}
_parsing = threading.Lock()

#: promtool's line for a recording rule whose expression does not parse.
_RULE_PARSE_ERROR = re.compile(r'"q(\d+)": could not parse expression: (.*)$')


def query_problem(promtool: Path, expr: str) -> str | None:
    """Why ``expr`` does not parse as PromQL (None when it does); asked once per query."""
    return query_problems(promtool, [expr])[expr]


def query_problems(promtool: Path, exprs: Sequence[str]) -> dict[str, str | None]:
    """Why each query does not parse (None when it does), from one ``promtool check rules``.

    Every query not asked before becomes a recording rule of one file: a dashboard's queries
    cost one program run instead of one each. Should promtool fail without naming a rule,
    each query is asked alone (``promtool promql format``).
    """
    with _parsing:  # environments checked side by side ask once for the queries they share
        fresh = sorted({e for e in exprs if (str(promtool), e) not in _parsed})
        _parse(promtool, fresh)
    return {e: _parsed[(str(promtool), e)] for e in exprs}


def _parse(promtool: Path, fresh: Sequence[str]) -> None:
    """Record in ``_parsed`` the answer for each of ``fresh``, queries not asked before."""
    if fresh:
        with tempfile.TemporaryDirectory(prefix="ci-promql-") as tmp:
            path = Path(tmp) / "queries.yaml"
            rules = [{"record": f"q{i}", "expr": e} for i, e in enumerate(fresh)]
            path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
            done = proc.run(
                (str(promtool), "check", "rules", "--lint=none", str(path)),
                check=False,
                timeout=60,
                what="promtool check rules",
            )
        found: dict[str, str | None] = {}
        for line in (done.stdout + "\n" + done.stderr).splitlines():
            match = _RULE_PARSE_ERROR.search(line)
            if match:
                found[fresh[int(match.group(1))]] = _short(match.group(2))
        if not done.ok and not found:
            found = {e: _format_problem(promtool, e) for e in fresh}
        for e in fresh:
            _parsed[(str(promtool), e)] = found.get(e)


def _format_problem(promtool: Path, expr: str) -> str | None:
    done = proc.run(
        (str(promtool), "--experimental", "promql", "format", expr),
        check=False,
        timeout=30,
        what="promtool promql format",
    )
    return None if done.ok else _short(done.stderr or done.stdout)


def findings(
    promtool: Path,
    env: str,
    *,
    rules: Sequence[RuleSet],
    queries: Sequence[Panel],
    tests: Sequence[Path],
    where: Where,
) -> list[Finding]:
    """Every observability problem of one environment's rendering."""
    out: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="ci-observe-") as tmp:
        work = Path(tmp)
        bad = check_rules(promtool, rules, work)
        good = [rs for rs in rules if rs.name not in bad]
        for rs in rules:
            template = where.template(rs.manifest.source)
            if rs.name in bad:
                message = f"{rs.manifest.ref}: promtool check rules: {bad[rs.name]}"
                out.append(where.finding("OBS001", message, template, "kind: PrometheusRule", env))
        for rs, alert in untested(good, tests):
            message = f"{rs.manifest.ref}: alert {alert} has no unit test in {ALERT_TESTS}/"
            template = where.template(rs.manifest.source)
            out.append(where.finding("OBS002", message, template, f"alert: {alert}", env))
        for rs, alert, missing in one_sided(good, tests):
            case = "fires" if missing == "firing" else "stays quiet (exp_alerts: [])"
            message = f"{rs.manifest.ref}: alert {alert} has no unit test where it {case}"
            template = where.template(rs.manifest.source)
            out.append(where.finding("OBS006", message, template, f"alert: {alert}", env))
        if good and tests:
            files = [work / f"{rs.name}.yaml" for rs in good]
            for path, problem in run_tests(promtool, files, tests, work).items():
                message = f"promtool test rules: {problem}"
                out.append(where.finding("OBS003", message, path, None, env))
    parsed = query_problems(promtool, [expand(p.expr, p.variables) for p in queries])
    for panel in queries:
        parse_error = parsed[expand(panel.expr, panel.variables)]
        if parse_error:
            path, needle = where.panel_file(panel)
            message = f"{panel.ref}: query does not parse: {parse_error}"
            out.append(where.finding("OBS004", message, path, needle, env))
        for fn, name in gauge_rates(panel.expr):
            path, needle = where.panel_file(panel)
            message = f"{panel.ref}: {fn}() of {name}, which is not named like a counter"
            found = where.finding("OBS005", message, path, needle, env)
            out.append(dataclasses.replace(found, severity=WARNING))
    return out


def chart_findings(cfg: Config, env: str, manifests: Sequence[Manifest]) -> list[Finding]:
    """The observability findings of one environment's rendering (none to check: no promtool)."""
    rules, queries = rule_sets(manifests), panels(manifests)
    if not rules and not queries:
        return []
    from ci import tools

    promtool = tools.require("promtool").path
    where = Where(cfg.chart.path, cfg.root)
    tests = test_files(cfg.chart.path)
    return findings(promtool, env, rules=rules, queries=queries, tests=tests, where=where)
