"""The ordered pipeline: the single list that ``make ci-local`` runs and the push workflow follows.

Each step is a ``ci`` command line. ``ci pipeline run`` executes them in order as separate
processes, timing each, and stops at the first failure; a workflow step runs one of them by
name (``ci pipeline step NAME``), so what a step does is written only here. Each step names the
steps it needs: a test checks that the workflows' ``needs:`` enforce exactly that gating.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ci import artifacts, proc
from ci.errors import PipelineError, StepFailed


@dataclass(frozen=True)
class Step:
    """One pipeline step: a name for people, the ``ci`` arguments that perform it, and the
    earlier steps that must have succeeded before it may start (what a workflow must gate)."""

    name: str
    args: tuple[str, ...]
    needs: tuple[str, ...] = ()

    def command(self) -> str:
        return "ci " + " ".join(self.args)


def push_pipeline(env: str = "staging", *, push: bool = True) -> tuple[Step, ...]:
    """The steps of a push to the default branch, deploying to ``env``.

    ``push=False`` builds the images without pushing them: what a pull request runs of the
    same steps (it stops before the deploy).
    """
    return (
        Step("config", ("config", "validate")),
        Step("images", ("images", "build", "--push") if push else ("images", "build"), ("config",)),
        Step("chart", ("chart", "check")),
        Step("deploy", ("deploy", "--env", env), ("images", "chart")),
        Step("smoke", ("smoke", "--env", env), ("deploy",)),
    )


def requirements(steps: Sequence[Step], name: str) -> set[str]:
    """Every step that must succeed before ``name`` starts: its needs, and theirs."""
    by_name = {s.name: s for s in steps}
    found: set[str] = set()
    pending = list(by_name[name].needs)
    while pending:
        need = pending.pop()
        if need not in found:
            found.add(need)
            pending += by_name[need].needs
    return found


@dataclass
class StepResult:
    step: Step
    started: datetime
    duration: float
    returncode: int
    #: What the step did: ``ran`` (did work), ``cached`` or ``skipped``, and why (``annotate``).
    outcome: str = "ran"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def exit_code(self) -> int:
        """The step's exit code as a shell reports it: 128 + N when killed by signal N."""
        return self.returncode if self.returncode >= 0 else 128 - self.returncode

    def raise_if_failed(self) -> None:
        """``StepFailed`` with the step's exit code; the step has printed its own error."""
        if not self.ok:
            raise StepFailed(f"{self.step.command()} failed", self.exit_code)


@dataclass
class PipelineResult:
    steps: list[StepResult] = field(default_factory=list)
    skipped: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps) and not self.skipped

    def raise_if_failed(self) -> None:
        """``PipelineError`` (exit 1) naming the failed step, whose output shows why."""
        failed = [s.step.name for s in self.steps if not s.ok]
        if not self.ok:
            raise PipelineError(f"pipeline failed at {', '.join(failed)}", reported=True)


StepStarted = Callable[[Step], None]


def run(
    steps: Sequence[Step],
    *,
    global_args: Sequence[str] = (),
    on_start: StepStarted | None = None,
    on_line: proc.LineSink | None = None,
) -> PipelineResult:
    """Run each step as ``python -m ci GLOBAL_ARGS STEP_ARGS`` until one fails."""
    result = PipelineResult()
    for i, step in enumerate(steps):
        if on_start is not None:
            on_start(step)
        started = datetime.now(UTC)
        t0 = time.monotonic()
        done = proc.run(
            (sys.executable, "-m", "ci", *global_args, *step.args),
            check=False,
            timeout=None,
            on_line=on_line,
            what=step.command(),
        )
        result.steps.append(StepResult(step, started, time.monotonic() - t0, done.returncode))
        if not done.ok:
            result.skipped = list(steps[i + 1 :])
            break
    return result


# ----------------------------------------------------------------------------- summary


@dataclass
class Summary:
    """What the pipeline produced, read back from the artifacts the steps wrote."""

    images: list[list[str]] = field(default_factory=list)
    deploy: list[list[str]] = field(default_factory=list)
    smoke: list[list[str]] = field(default_factory=list)


def _read(path: Path) -> dict[str, Any] | None:
    """A step's JSON artifact, or None when that step did not run (or wrote nothing usable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def collect_summary(out_dir: Path) -> Summary:
    """Tables of images and digests, the deploy, and the smoke checks from ``out_dir``."""
    summary = Summary()
    images = _read(out_dir / "images.json") or {}
    for i in images.get("images", []):
        digest = str(i.get("digest", ""))
        summary.images.append(
            [str(i.get("name")), str(i.get("status")), digest, f"{i.get('duration', 0):.1f}s"]
        )
    rel = _read(out_dir / "release.json")
    if rel is not None:
        prev = rel.get("previous_revision")
        smoke_state = (rel.get("smoke") or {}).get("result", "pending")
        summary.deploy.append(
            [
                str(rel.get("env")),
                str(rel.get("release")),
                str(rel.get("revision")),
                "-" if prev is None else str(prev),
                str(rel.get("git_sha", ""))[:12],
                smoke_state,
            ]
        )
    smoke = _read(out_dir / "smoke.json") or {}
    for c in smoke.get("checks", []):
        summary.smoke.append(
            [
                str(c.get("name")),
                str(c.get("status")),
                str(c.get("attempts")),
                f"{c.get('seconds', 0):.1f}s",
            ]
        )
    return summary


def _fresh(path: Path, since: datetime) -> dict[str, Any] | None:
    """A step's artifact when this run wrote it (not one left by an earlier run)."""
    try:
        if path.stat().st_mtime < since.timestamp() - 1:
            return None
    except OSError:
        return None
    return _read(path)


def step_outcome(name: str, out_dir: Path, started: datetime) -> tuple[str, str]:
    """``(outcome, reason)`` of a step, read from the artifact it wrote.

    The images step was answered from cache when no image was built; the chart check when
    its rendering was reused; the deploy skipped when the release did not change.
    """
    if name == "images":
        images = (_fresh(out_dir / "images.json", started) or {}).get("images", [])
        built = [str(i.get("name")) for i in images if i.get("status") == "built"]
        if images and not built:
            return "cached", f"{len(images)} image(s) unchanged since their last push"
        return ("ran", "built " + ", ".join(built)) if built else ("ran", "")
    if name == "chart":
        findings = _fresh(out_dir / "findings.json", started) or {}
        if findings.get("cached"):
            return "cached", str(findings.get("cached_reason") or "chart, values unchanged")
        return "ran", ""
    if name == "deploy":
        done = (_fresh(out_dir / "release.json", started) or {}).get("deploy") or {}
        action = str(done.get("action") or "")
        return ("skipped" if action == "skipped" else "ran"), str(done.get("reason") or "")
    return "ran", ""


def annotate(result: PipelineResult, out_dir: Path) -> None:
    """Set each finished step's outcome and reason from what it wrote to ``out_dir``."""
    for s in result.steps:
        if s.ok:
            s.outcome, s.reason = step_outcome(s.step.name, out_dir, s.started)


def write_result(result: PipelineResult, out_dir: Path) -> Path:
    """``pipeline.json``: each step's command, start, duration, exit code and outcome (did work,
    cached or skipped, and why); the outcomes are set on ``result`` too, for the summary."""
    annotate(result, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "ok": result.ok,
        "steps": [
            {
                "name": s.step.name,
                "command": s.step.command(),
                "started": s.started.isoformat(),
                "duration": round(s.duration, 2),
                "returncode": s.returncode,
                "outcome": s.outcome,
                "reason": s.reason,
            }
            for s in result.steps
        ],
        "skipped": [s.name for s in result.skipped],
    }
    return artifacts.write_json(out_dir / "pipeline.json", data)
