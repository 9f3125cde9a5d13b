"""An older commit never replaces a newer one: the skip decision, the live commit read from
Helm's values, what release.json records, its promotion, and how long a deploy waits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci import config, helm, release
from ci.deploy import promotion, skip, step
from ci.deploy.helmcalls import git_sha_of
from ci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
LIVE = "b" * 40
THIS = "a" * 40


def decide(**kw: Any) -> skip.Decision:
    args: dict[str, Any] = {
        "force": False,
        "status": "deployed",
        "changes": 0,
        "not_ready": [],
        "drifted": [],
        "live_is_later": "",
    }
    return skip.decide(**(args | kw))


# ----------------------------------------------------------------------------- the decision


def test_a_later_live_commit_skips_as_superseded() -> None:
    decision = decide(live_is_later=LIVE)
    assert decision.upgrade is False
    assert decision.reason == f"superseded: the release runs {LIVE[:12]}, a later commit"
    assert decision.superseded_by == LIVE


@pytest.mark.parametrize(
    "other",
    [
        {"changes": 4},
        {"not_ready": ["deployment/backend 0/1 ready"]},
        {"drifted": ["Deployment/b (ns): spec.replicas"]},
    ],
)
def test_superseded_wins_over_changes_health_and_drift(other: dict[str, Any]) -> None:
    """The older commit's manifests differ because the later one changed them: no upgrade."""
    assert decide(live_is_later=LIVE, **other).reason.startswith("superseded: ")
    assert decide(**other).upgrade is True


def test_force_deploys_an_older_commit_anyway() -> None:
    decision = decide(force=True, live_is_later=LIVE)
    assert (decision.upgrade, decision.reason, decision.superseded_by) == (True, "--force", "")


@pytest.mark.parametrize(("status", "reason"), [(None, "no release yet"), ("failed", "the")])
def test_a_release_that_is_not_deployed_is_repaired_first(status: str | None, reason: str) -> None:
    decision = decide(status=status, live_is_later=LIVE)
    assert decision.upgrade is True
    assert decision.reason.startswith(reason)


def test_no_later_commit_decides_as_before() -> None:
    assert decide().reason.startswith("unchanged: ")
    assert decide().superseded_by == ""


# ----------------------------------------------------------------------------- the live commit


@pytest.mark.parametrize(
    ("values", "sha"),
    [
        ({"deployInfo": {"gitSha": LIVE, "triggeredBy": "ci"}, "backend": {}}, LIVE),
        ({"deployInfo": {"gitSha": f" {LIVE}\n"}}, LIVE),
        ({"deployInfo": {"triggeredBy": "ci"}}, ""),
        ({"deployInfo": {"gitSha": 1234567}}, ""),
        ({"deployInfo": "x"}, ""),
        ({}, ""),
        (None, ""),
    ],
)
def test_the_live_commit_comes_from_deploy_info(values: Any, sha: str) -> None:
    assert git_sha_of(json.dumps(values)) == sha


def test_the_live_values_are_asked_of_helm_get_values() -> None:
    """Only the values set at deploy time (not the chart's defaults): ``--set-string`` put the
    commit there."""
    argv = helm.get_values_argv(
        helm.Helm("/bin/helm4", "v4.3.1"), "r", namespace="n", kube_context="c", kubeconfig="/k"
    )
    assert argv[:4] == ("/bin/helm4", "get", "values", "r")
    assert "--all" not in argv
    assert argv[-2:] == ("--output", "json")
    assert {"--namespace", "--kube-context", "--kubeconfig"} <= set(argv)


def test_unreadable_values_name_no_commit() -> None:
    assert git_sha_of("") == ""
    assert git_sha_of("Error: not json") == ""


@pytest.mark.parametrize(
    ("this", "live"), [("", LIVE), (THIS, ""), (THIS, THIS), ("", "")], ids=str
)
def test_nothing_to_compare_is_not_later(this: str, live: str, tmp_path: Path) -> None:
    """No git is asked (tmp_path is no repository): nothing recorded, or the same commit."""
    assert promotion.later(tmp_path, this, live) == promotion.Lineage(False)


@pytest.mark.parametrize("bad", ["--all", "HEAD", "main", "abc", "g" * 40])
def test_what_is_not_a_sha_is_never_passed_to_git(bad: str, tmp_path: Path) -> None:
    lineage = promotion.later(tmp_path, THIS, bad)
    assert lineage.later is None
    assert lineage.why == f"not a commit SHA: {bad}"
    assert promotion.later(tmp_path, bad, LIVE).why == f"not a commit SHA: {bad}"


# ----------------------------------------------------------------------------- the record


def record(deploy: dict[str, str]) -> release.ReleaseRecord:
    return release.ReleaseRecord(
        env="staging",
        namespace="schedule-staging",
        release="schedule-app",
        revision=7,
        previous_revision=7,
        git_sha=THIS,
        images=[release.ImageRef("backend", "reg/backend", "sha256:" + "9" * 64, "backend")],
        chart_name="schedule-app",
        chart_version="1.0.0",
        triggered_by="ci",
        time="",
        run_id="1.1",
        smoke={"result": "passed"},
        deploy=deploy,
    )


def test_release_json_names_the_later_commit_when_superseded() -> None:
    done = step._what_it_did(decide(live_is_later=LIVE))
    assert done == {
        "action": "skipped",
        "reason": f"superseded: the release runs {LIVE[:12]}, a later commit",
        "superseded_by": LIVE,
    }
    assert step._what_it_did(decide()) == {
        "action": "skipped",
        "reason": "unchanged: manifests equal the live release, which is healthy",
    }


def test_a_superseded_record_round_trips(tmp_path: Path) -> None:
    rec = record(step._what_it_did(decide(live_is_later=LIVE)))
    back = release.read_release(release.write_release(rec, tmp_path))
    assert back.deploy["superseded_by"] == LIVE


def test_a_superseded_record_is_never_promoted() -> None:
    """Its smoke checks ran against the later commit, not against its own images."""
    rec = record(step._what_it_did(decide(live_is_later=LIVE)))
    with pytest.raises(ConfigError) as exc:
        release.check_for_promotion(rec, chart_version="1.0.0", source="release/release.json")
    assert exc.value.exit_code == 2
    assert exc.value.message == (
        f"release manifest for commit {THIS[:12]} was never deployed to 'staging': commit "
        f"{LIVE[:12]} had superseded it there; release that one"
    )


def test_an_unchanged_skip_is_still_promoted() -> None:
    rec = record(step._what_it_did(decide()))
    release.check_for_promotion(rec, chart_version="1.0.0", source="release/release.json")


def test_the_pipeline_step_outcome_is_skipped_with_the_reason(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from ci import pipeline

    started = datetime.now(UTC) - timedelta(seconds=5)
    release.write_release(record(step._what_it_did(decide(live_is_later=LIVE))), tmp_path)
    assert pipeline.step_outcome("deploy", tmp_path, started) == (
        "skipped",
        f"superseded: the release runs {LIVE[:12]}, a later commit",
    )


# ----------------------------------------------------------------------------- the wait


def test_a_deploy_waits_for_the_one_in_progress_by_default() -> None:
    """timeout + 5m: the workflows no longer queue deploys, the Lease makes them wait."""
    envs = config.load(ROOT / "ci.yaml").environments
    assert (envs["staging"].timeout, envs["staging"].lease_wait) == (600, 900)
    assert (envs["prod"].timeout, envs["prod"].lease_wait) == (900, 1200)


def test_an_explicit_lease_wait_wins() -> None:
    text = (ROOT / "tests/data/config/good.yaml").read_text()
    assert "    timeout:" not in text, "good.yaml sets a timeout: the default is not exercised"
    path = ROOT / "tests/data/config/tmp-lease-wait.yaml"  # its files are named from there
    try:
        path.write_text(text)
        assert config.load(path).environment("staging").lease_wait == 600 + 300
        staging = "  staging:\n"
        assert text.count(staging) == 1
        path.write_text(text.replace(staging, staging + "    deploy: {lease_wait: 2m}\n"))
        assert config.load(path).environment("staging").lease_wait == 120
    finally:
        path.unlink(missing_ok=True)
