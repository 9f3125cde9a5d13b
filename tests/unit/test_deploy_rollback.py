"""``ci deploy --rollback REVISION`` without a cluster: the revision is checked against Helm's
history, Helm's argv waits like an upgrade, and the command refuses options of a new release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ci import config, deploy, helm, presenter
from ci.cli import main
from ci.config import Environment
from ci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
H4 = helm.Helm("/bin/helm4", "v4.1.0")


@pytest.fixture(scope="module")
def prod() -> Environment:
    return config.load(ROOT / "ci.yaml").environments["prod"]


def history(*statuses: str) -> list[dict[str, Any]]:
    return [{"revision": i, "status": s} for i, s in enumerate(statuses, start=1)]


def refused(hist: list[dict[str, Any]], revision: int, env: Environment) -> str:
    with pytest.raises(ConfigError) as exc:
        deploy.check_target(hist, revision, env)
    assert exc.value.exit_code == 2
    return exc.value.message


def test_a_superseded_revision_is_a_target(prod: Environment) -> None:
    deploy.check_target(history("superseded", "superseded", "deployed"), 2, prod)


def test_an_unknown_revision_names_those_helm_has(prod: Environment) -> None:
    message = refused(history("superseded", "failed", "deployed"), 7, prod)
    assert message == (
        "--rollback 7: release schedule-app in schedule-prod has no revision 7 "
        "(expected one of: 1, 2, 3)"
    )


def test_the_live_revision_is_not_a_target(prod: Environment) -> None:
    assert "revision 2 is the one deployed now" in refused(
        history("superseded", "deployed"), 2, prod
    )


def test_a_failed_revision_is_not_a_target(prod: Environment) -> None:
    message = refused(history("superseded", "failed", "deployed"), 2, prod)
    assert "revision 2 of release schedule-app in schedule-prod is failed" in message
    assert "expected a revision that was deployed: deployed or superseded" in message


def test_a_release_without_history_is_refused(prod: Environment) -> None:
    assert "has no revisions" in refused([], 1, prod)


def test_the_rollback_waits_within_the_environments_timeout(prod: Environment) -> None:
    argv = helm.rollback_argv(
        H4, prod.release, 3, namespace=prod.namespace, timeout=f"{prod.timeout}s"
    )
    assert argv[:4] == ("/bin/helm4", "rollback", "schedule-app", "3")
    assert "--wait=watcher" in argv, "Helm 4 waits for readiness only with a strategy"
    assert argv[argv.index("--namespace") + 1] == "schedule-prod"
    assert argv[argv.index("--timeout") + 1] == f"{prod.timeout}s"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--release-manifest", "release.json"], "--release-manifest"),
        (["--set", "a=b", "--force"], "--set, --force"),
        (["--server-side"], "--server-side"),
    ],
)
def test_options_of_a_new_release_cannot_go_with_rollback(
    extra: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    args = ["-c", str(ROOT / "ci.yaml"), "-o", str(tmp_path), "deploy", "--env", "prod"]
    result = CliRunner().invoke(main, [*args, "--rollback", "3", *extra])
    assert result.exit_code == 2, result.output
    assert f"--rollback takes a revision Helm already has; {named} " in result.output
    assert "Traceback" not in result.output


def test_a_revision_must_be_a_positive_number(tmp_path: Path) -> None:
    args = ["-c", str(ROOT / "ci.yaml"), "-o", str(tmp_path), "deploy", "--env", "prod"]
    result = CliRunner().invoke(main, [*args, "--rollback", "0"])
    assert result.exit_code == 2
    assert "--rollback" in result.output


def test_the_summary_names_the_revisions(prod: Environment) -> None:
    result = deploy.RollbackResult(prod, target=3, previous_revision=5, revision=6)
    text = presenter.rollback_markdown("prod", result)
    assert text.startswith("### Rollback: prod\n")
    assert "| schedule-app | schedule-prod | 3 | 5 | 6 |" in text
