"""Chart checks: lint, render, schema validation and policy per environment.

Why one module drives them: every check works on the same rendering of the chart for an
environment (its values files, release name and namespace), and every problem ends up as one
``Finding`` that points at the file a person has to edit -- the template named in Helm's
``# Source:`` comment, the values file yamllint read, or the Chart.yaml lint complained about.
``check`` runs all of it for every environment and writes ``findings.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ci import artifacts, policy, proc, validate
from ci import helm as helmcmd
from ci.config import Config, Environment, read_yaml_with_lines
from ci.errors import ChartError, ConfigError, Location
from ci.manifests import ERROR, WARNING, Finding, Issue, Manifest, parse_manifests
from ci.observe import offline as observability


@dataclass
class Report:
    """What a check step found, per environment, and how long it took."""

    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # env -> objects or files checked
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: Report) -> None:
        self.findings += other.findings
        self.seconds += other.seconds
        for env, count in other.checked.items():
            self.checked[env] = self.checked.get(env, 0) + count


@dataclass(frozen=True)
class Rendered:
    """The manifests of one environment, as text and as objects."""

    env: str
    text: str
    manifests: tuple[Manifest, ...]


# ----------------------------------------------------------------------------- environments


def select_envs(cfg: Config, names: Sequence[str]) -> list[Environment]:
    """The named environments (all of them when none is named), unknown names rejected."""
    if not names:
        return list(cfg.environments.values())
    return [cfg.environment(n) for n in names]


def relpath(cfg: Config, path: Path | str) -> str:
    """``path`` relative to the project root when it is inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(cfg.root.resolve()))
    except ValueError:
        return str(p)


def template_path(cfg: Config, source: str) -> Path:
    """The file behind Helm's ``# Source: <chart>/templates/x.yaml``."""
    _, _, inside = source.partition("/")
    return cfg.chart.path / inside


# ----------------------------------------------------------------------------- rendering


def render(
    cfg: Config,
    helm: helmcmd.Helm,
    env: Environment,
    set_values: Sequence[str] = (),
    set_strings: Mapping[str, str] | None = None,
) -> Rendered:
    """``helm template`` for one environment, as the release would be installed.

    ``set_strings`` are values that must stay strings (image tags), whatever they look like.
    """
    argv = helmcmd.template_argv(
        helm,
        cfg.chart.path,
        release=env.release,
        namespace=env.namespace,
        values=env.values,
        kube_version=cfg.chart.kubernetes_version,
        set_values=set_values,
        set_strings=set_strings,
    )
    result = proc.run(argv, timeout=120, check=False, what=f"helm template ({env.name})")
    if not result.ok:
        raise ChartError(
            f"{relpath(cfg, cfg.chart.path)}: helm template failed for {env.name}: "
            f"{helmcmd.error_message(result.stderr)}",
            location=Location(relpath(cfg, cfg.chart.path)),
            detail=proc.tail(result.stderr),
        )
    return Rendered(env.name, result.stdout, parse_manifests(result.stdout))


def write_rendered(rendered: Rendered, output: Path) -> list[Path]:
    """Write the manifests to one file (``*.yaml``) or a folder with one file per template.

    The folder layout is ``helm template --output-dir``'s: ``<output>/<chart>/templates/x.yaml``.
    """
    if output.suffix in (".yaml", ".yml"):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(rendered.text, encoding="utf-8")
        return [output]
    by_source: dict[str, list[Manifest]] = {}
    for m in rendered.manifests:
        by_source.setdefault(m.source, []).append(m)
    written = []
    for source, items in by_source.items():
        target = output / source
        target.parent.mkdir(parents=True, exist_ok=True)
        docs = [m.text or f"# Source: {source}\n" + yaml.safe_dump(m.obj) for m in items]
        target.write_text("---\n" + "---\n".join(docs), encoding="utf-8")
        written.append(target)
    return written


# ----------------------------------------------------------------------------- lint

_LINT_LINE = re.compile(r"^\[(ERROR|WARNING)\]\s+(?:([^:\s][^:]*?):\s+)?(.*)$")
_LINT_END = re.compile(r"^(\[(INFO|ERROR|WARNING)\]|==> |Error: |\d+ chart\(s\) linted)")


def parse_lint(output: str, cfg: Config, env: str) -> list[Finding]:
    """Findings from ``helm lint`` output: ``[ERROR] templates/x.yaml: message`` lines.

    A message can go on over the following lines (values schema errors list one key per
    line); those lines are joined into it.
    """
    chart_rel = relpath(cfg, cfg.chart.path)
    entries: list[tuple[str, list[str]]] = []
    following = False
    for raw in output.splitlines():
        line = raw.strip()
        match = _LINT_LINE.match(line)
        if match:
            _level, file, message = match.groups()
            path = f"{chart_rel}/{file}" if file and not file.startswith("/") else chart_rel
            entries.append((path, [message.strip().removeprefix("- ")]))
            following = True
        elif following and line and not _LINT_END.match(line):
            entries[-1][1].append(line.removeprefix("- "))
        else:
            following = False
    return [Finding("LINT001", " ".join(parts), path, None, env) for path, parts in entries]


def lint(cfg: Config, helm: helmcmd.Helm, envs: Sequence[Environment]) -> Report:
    """``helm lint --strict`` per environment (values schema included) and yamllint on values."""
    started = time.monotonic()
    report = Report()
    with ThreadPoolExecutor(max_workers=max(1, len(envs))) as pool:
        futures = [pool.submit(helm_lint, cfg, helm, env) for env in envs]
        report.findings += yamllint(cfg, values_files(cfg, envs))
        for env, future in zip(envs, futures, strict=True):
            report.findings += future.result()
            report.checked[env.name] = 1
    report.seconds = time.monotonic() - started
    return report


def helm_lint(cfg: Config, helm: helmcmd.Helm, env: Environment) -> list[Finding]:
    """``helm lint --strict`` of one environment, each problem a finding."""
    argv = helmcmd.lint_argv(
        helm, cfg.chart.path, env.values, strict=True, kube_version=cfg.chart.kubernetes_version
    )
    result = proc.run(argv, timeout=120, check=False, what=f"helm lint ({env.name})")
    found = parse_lint(result.stdout + "\n" + result.stderr, cfg, env.name)
    found = _dedupe([_point_at_value(cfg, env, f) for f in found])
    if not result.ok and not found:
        message = helmcmd.error_message(result.stderr + result.stdout)
        found = [Finding("LINT001", message, relpath(cfg, cfg.chart.path), None, env.name)]
    return found


_SCHEMA_PATH = re.compile(r"at '(/[^']*)'")


def _point_at_value(cfg: Config, env: Environment, finding: Finding) -> Finding:
    """Move a values-schema finding to the values file and line that set the bad key.

    Helm reports schema errors against ``values.yaml`` whichever file set the value; the
    last file (in ``-f`` order) that has the key is the one to fix.
    """
    pointers = [p for p in _SCHEMA_PATH.findall(finding.message) if p.strip("/")]
    if not pointers:
        return finding
    parts = pointers[-1].strip("/").split("/")  # the deepest: "allOf failed" comes first
    key = tuple(int(p) if p.isdigit() else p for p in parts)
    for path in reversed([cfg.chart.path / "values.yaml", *env.values]):
        line = _key_line(path, key)
        if line is not None:
            return dataclasses.replace(finding, file=relpath(cfg, path), line=line)
    return finding


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per values line (Helm 3 reports schema errors for values.yaml and templates/)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for f in findings:
        if f.line is not None:
            if (f.file, f.line) in seen:
                continue
            seen.add((f.file, f.line))
        out.append(f)
    return out


def _key_line(path: Path, key: tuple[str | int, ...]) -> int | None:
    try:
        _data, lines = read_yaml_with_lines(path)
    except ConfigError:
        return None
    return lines.get(key)


def values_files(cfg: Config, envs: Iterable[Environment]) -> list[Path]:
    """The chart's values.yaml plus every environment's values files, without repeats."""
    files = [cfg.chart.path / "values.yaml"]
    for env in envs:
        files += [p for p in env.values if p not in files]
    return files


def yamllint(cfg: Config, files: Sequence[Path]) -> list[Finding]:
    """yamllint on ``files`` with the chart's ``.yamllint.yaml`` (kept out of the package by
    .helmignore). In-process: a second Python start would cost more than the linting."""
    from yamllint import linter  # type: ignore[import-untyped]
    from yamllint.config import (  # type: ignore[import-untyped]
        YamlLintConfig,
        YamlLintConfigError,
    )

    config = cfg.chart.path / ".yamllint.yaml"
    try:
        conf = (
            YamlLintConfig(file=str(config))
            if config.is_file()
            else YamlLintConfig("extends: default")
        )
    except YamlLintConfigError as exc:
        raise ConfigError(
            f"invalid yamllint configuration: {exc}", location=Location(relpath(cfg, config))
        ) from None
    out = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read values file: {exc.strerror}", location=Location(relpath(cfg, path))
            ) from None
        for problem in linter.run(text, conf, str(path)):
            message = f"{problem.desc} ({problem.rule})" if problem.rule else problem.desc
            severity = ERROR if problem.level == "error" else WARNING
            out.append(
                Finding("LINT002", message, relpath(cfg, path), problem.line, None, severity)
            )
    return out


# ----------------------------------------------------------------------------- findings


def locate(template: Path, needle: str | None, kind: str | None = None) -> int | None:
    """Best-effort line of ``needle`` (else of ``kind: <kind>``) in a template file."""
    try:
        lines = template.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for wanted in (needle, f"kind: {kind}" if kind else None):
        if not wanted:
            continue
        for number, line in enumerate(lines, start=1):
            if wanted in line:
                return number
    return None


def to_findings(cfg: Config, env: str, issues: Iterable[Issue]) -> list[Finding]:
    """Tie object-level issues to their template file and line."""
    out = []
    for issue in issues:
        path = template_path(cfg, issue.manifest.source)
        line = locate(path, issue.needle, issue.manifest.kind)
        message = f"{issue.manifest.ref}: {issue.message}"
        out.append(Finding(issue.rule, message, relpath(cfg, path), line, env, issue.severity))
    return out


def validate_env(cfg: Config, rendered: Rendered) -> Report:
    """Schema validation of one environment's objects."""
    started = time.monotonic()
    schemas = validate.SchemaSet.load(cfg.chart.kubernetes_version, cfg.chart.crds)
    issues = validate.validate(rendered.manifests, schemas)
    findings = to_findings(cfg, rendered.env, issues)
    count = {rendered.env: len(rendered.manifests)}
    return Report(findings, count, time.monotonic() - started)


def policy_env(cfg: Config, rendered: Rendered) -> Report:
    """Policy rules on one environment's objects."""
    started = time.monotonic()
    findings = to_findings(cfg, rendered.env, policy.evaluate(rendered.manifests))
    count = {rendered.env: len(rendered.manifests)}
    return Report(findings, count, time.monotonic() - started)


def check(
    cfg: Config,
    helm: helmcmd.Helm,
    envs: Sequence[Environment],
    *,
    findings_path: Path | None = None,
    rendered_dir: Path | None = None,
) -> Report:
    """Lint, render, validate, policy and observability for every environment; write
    ``findings.json``.

    helm runs in parallel (lint and one render per environment); an environment that does
    not render is a finding, and the other environments are still checked.
    """
    started = time.monotonic()
    cache = findings_path.with_name("chart-check.cache.json") if findings_path else None
    key = check_key(cfg, helm, envs)
    cached = _cached(cache, key, rendered_dir, envs)
    if cached is not None:
        cached.seconds = time.monotonic() - started
        if findings_path is not None:
            write_findings(cached, findings_path, cached=True)
        return cached
    report = Report()
    with ThreadPoolExecutor(max_workers=2 * max(1, len(envs))) as pool:
        lint_futures = [pool.submit(helm_lint, cfg, helm, env) for env in envs]
        renders = [(env, pool.submit(render, cfg, helm, env)) for env in envs]
        # Python work runs while helm lint is still going
        report.findings += yamllint(cfg, values_files(cfg, envs))
        for env, future in renders:
            outcome = _outcome(future)
            if isinstance(outcome, ChartError):
                file = outcome.location.file if outcome.location else relpath(cfg, cfg.chart.path)
                report.findings.append(Finding("RENDER001", outcome.message, file, None, env.name))
                continue
            if rendered_dir is not None:
                write_rendered(outcome, rendered_dir / outcome.env)
            report.extend(validate_env(cfg, outcome))
            report.findings += policy_env(cfg, outcome).findings
            report.findings += observability.chart_findings(cfg, outcome.env, outcome.manifests)
        for lint_future in lint_futures:
            report.findings += lint_future.result()
    report.findings.sort(key=_order)
    report.seconds = time.monotonic() - started
    if findings_path is not None:
        write_findings(report, findings_path)
    if cache is not None:
        payload = {"findings": [asdict(f) for f in report.findings], "checked": report.checked}
        artifacts.write_json(cache, {"key": key, "report": payload})
    return report


def check_key(cfg: Config, helm: helmcmd.Helm, envs: Sequence[Environment]) -> str:
    """A content hash of everything a check reads, so an unchanged chart is not checked again.

    The chart's files, each environment's values files and names, the Kubernetes version and
    CRDs (the chart's files and the upstream pins), Helm's version, and the toolkit's own
    checking code (a new rule must re-check).
    """
    digest = hashlib.sha256(f"{helm.version}|{cfg.chart!r}|{cfg.project}".encode())
    own = Path(__file__).resolve().parent
    files = sorted(p for p in cfg.chart.path.rglob("*") if p.is_file())
    files += [Path(c) for c in cfg.chart.crds]
    files += [own / n for n in ("chart.py", "policy.py", "validate.py", "manifests.py")]
    # the upstream CRD pins and their conversion
    files += [own / "crdschema.py", own / "tools" / "crds.py", own / "tools" / "specs.py"]
    files += sorted((own / "observe").glob("*.py"))
    for env in envs:
        digest.update(f"|{env!r}".encode())
        files += list(env.values)
    for path in files:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"(missing)")
    return digest.hexdigest()


def _cached(
    cache: Path | None, key: str, rendered_dir: Path | None, envs: Sequence[Environment]
) -> Report | None:
    """The report of an earlier check with the same inputs, while its rendering is still there."""
    if cache is None:
        return None
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    if rendered_dir is not None and not all((rendered_dir / e.name).exists() for e in envs):
        return None
    stored = data.get("report") or {}
    findings = [Finding(**f) for f in stored.get("findings", [])]
    return Report(findings, {str(k): int(v) for k, v in (stored.get("checked") or {}).items()})


def _order(f: Finding) -> tuple[str, str, int, str]:
    """Findings grouped by environment, then file and line, as people read them."""
    return (f.env or "", f.file, f.line or 0, f.rule)


def _outcome(future: Any) -> Rendered | ChartError:
    try:
        result: Rendered = future.result()
    except ChartError as exc:
        return exc
    return result


def write_findings(report: Report, path: Path, *, cached: bool = False) -> None:
    """``findings.json``: every finding with file, line, rule id, message and environment;
    ``cached`` when an earlier check of the same inputs answered."""
    data: dict[str, Any] = {
        "ok": report.ok,
        "errors": len(report.errors),
        "findings": [asdict(f) for f in report.findings],
    }
    if cached:
        data["cached"] = True
        data["cached_reason"] = (
            "chart, values and Kubernetes version unchanged since the last check"
        )
    artifacts.write_json(path, data)
