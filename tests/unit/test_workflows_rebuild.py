"""The weekly rebuild (rebuild-weekly.yml), read as ``test_workflows`` reads the others: for a
scheduled run and a dispatch, the steps it would execute through the reusable pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.test_workflows import (
    PUSH_MAIN,
    PUSH_WORKFLOW,
    REUSABLE_WORKFLOW,
    ROOT,
    Event,
    gates,
    gating_problems,
    github_context,
    load_yaml,
    pipeline_steps,
    plan,
)

REBUILD_WORKFLOW = Path(".github/workflows/rebuild-weekly.yml")
SCHEDULE = Event(github_context("schedule", "refs/heads/main"))
DISPATCH = Event(github_context("workflow_dispatch", "refs/heads/main"))


def test_it_runs_weekly_and_on_demand() -> None:
    on = load_yaml(ROOT / REBUILD_WORKFLOW)["on"]
    assert set(on) == {"schedule", "workflow_dispatch"}
    [entry] = on["schedule"]
    minute, hour, day, month, weekday = entry["cron"].split()
    assert (day, month) == ("*", "*")
    assert weekday.isdigit(), "once a week: one day of the week"
    assert minute.isdigit()
    assert hour.isdigit()


@pytest.mark.parametrize("event", [SCHEDULE, DISPATCH], ids=["schedule", "dispatch"])
def test_a_rebuild_pushes_the_images_through_the_pipeline_and_deploys_nothing(
    event: Event,
) -> None:
    runs = plan(REBUILD_WORKFLOW, event)
    steps = {step.name: (run, step) for run, step in pipeline_steps(runs)}
    assert sorted(steps) == ["chart", "config", "images"]
    run, images = steps["images"]
    assert "--push" in images.args
    assert run.env["CI_SIGNING_MODE"] == "keyless"
    assert run.job.id.startswith("rebuild-weekly.yml:pipeline/pipeline.yml:")
    login = next(r for r in runs if ("images", "login") in r.ci_calls())
    assert gates(login, run)
    assert gating_problems(runs) == []


def test_without_push_images_a_scheduled_pipeline_would_push_nothing(tmp_path: Path) -> None:
    """The input is what makes the rebuild push: a scheduled run is not a push event."""
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    path = tmp_path / REBUILD_WORKFLOW
    path.write_text(path.read_text().replace("      push-images: true\n", ""))
    steps = {
        step.name: step for _, step in pipeline_steps(plan(REBUILD_WORKFLOW, SCHEDULE, tmp_path))
    }
    assert "--push" not in steps["images"].args


def test_the_push_pipeline_is_unchanged_by_the_push_images_input() -> None:
    call = load_yaml(ROOT / REUSABLE_WORKFLOW)["on"]["workflow_call"]["inputs"]
    assert call["push-images"] == {
        "description": call["push-images"]["description"],
        "type": "boolean",
        "default": False,
    }
    assert "push-images" not in load_yaml(ROOT / PUSH_WORKFLOW)["jobs"]["pipeline"]["with"]
    names = sorted(step.name for _, step in pipeline_steps(plan(PUSH_WORKFLOW, PUSH_MAIN)))
    assert names == ["chart", "config", "deploy", "images", "smoke"]


def test_the_rebuild_grants_only_what_the_called_jobs_ask_for() -> None:
    doc = load_yaml(ROOT / REBUILD_WORKFLOW)
    assert doc["permissions"] == {}
    job = doc["jobs"]["pipeline"]
    asked: dict[str, str] = {}
    for called in load_yaml(ROOT / REUSABLE_WORKFLOW)["jobs"].values():
        for scope, level in (called.get("permissions") or {}).items():
            asked[scope] = "write" if "write" in (level, asked.get(scope)) else level
    assert job["permissions"] == asked
    assert doc["concurrency"]["cancel-in-progress"] is False
