"""Promotion checks against scratch git repositories (the git CLI, no network, no cluster):
a release manifest is deployed only from its environment, commit and default branch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci import config, proc, release
from ci.cli import main
from ci.config import Environment
from ci.deploy import promotion
from ci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    return proc.run(("git", "-C", str(repo), *args), env=GIT_ENV, timeout=30).stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main has two commits, origin/main points at the second; HEAD is on main."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, "a")
    second = commit(root, "b")
    git(root, "update-ref", "refs/remotes/origin/main", second)
    return root


@pytest.fixture(scope="module")
def prod() -> Environment:
    env = config.load(ROOT / "ci.yaml").environments["prod"]
    assert env.promote_from == "staging", "ci.yaml: prod no longer promotes from staging"
    return env


def record(sha: str, env: str = "staging") -> release.ReleaseRecord:
    return release.ReleaseRecord(
        env=env,
        namespace=f"schedule-{env}",
        release="schedule-app",
        revision=5,
        previous_revision=4,
        git_sha=sha,
        images=[release.ImageRef("backend", "reg/backend", "sha256:" + "9" * 64, "backend")],
        chart_name="schedule-app",
        chart_version="1.0.0",
        triggered_by="ci",
        time="",
        run_id="1.1",
        smoke={"result": "passed"},
    )


def check(env: Environment, rec: release.ReleaseRecord, repo: Path, **environ: str) -> None:
    promotion.check(env, rec, repo=repo, source="release/release.json", environ=environ)


def refused(env: Environment, rec: release.ReleaseRecord, repo: Path, **environ: str) -> str:
    with pytest.raises(ConfigError) as exc:
        check(env, rec, repo, **environ)
    assert exc.value.exit_code == 2
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith("release/release.json: ")
    return exc.value.message


def test_the_staging_manifest_of_the_checked_out_commit_on_main_is_accepted(
    repo: Path, prod: Environment
) -> None:
    check(prod, record(git(repo, "rev-parse", "HEAD")), repo)


def test_an_older_commit_of_main_checked_out_is_accepted(repo: Path, prod: Environment) -> None:
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)
    check(prod, record(first), repo)


def test_a_manifest_from_another_environment_names_both(repo: Path, prod: Environment) -> None:
    message = refused(prod, record(git(repo, "rev-parse", "HEAD"), env="qa"), repo)
    assert message == (
        "release manifest is from environment 'qa', expected 'staging' "
        "(environments.prod.promote_from)"
    )


def test_a_manifest_of_another_commit_names_both(repo: Path, prod: Environment) -> None:
    head = git(repo, "rev-parse", "HEAD")
    message = refused(prod, record("f" * 40), repo)
    assert f"for commit {'f' * 40}, expected the checked-out commit {head}" in message


def test_a_commit_off_the_default_branch_is_refused(repo: Path, prod: Environment) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    side = commit(repo, "c")
    message = refused(prod, record(side), repo)
    expected = f"commit {side} is not on the default branch: expected an ancestor of origin/main"
    assert message == expected


def test_the_default_branch_from_the_environment_wins(repo: Path, prod: Environment) -> None:
    """``CI_DEFAULT_BRANCH`` (the repository's, set by the workflows) over ``default_branch``."""
    git(repo, "checkout", "-q", "-b", "trunk")
    side = commit(repo, "c")
    git(repo, "update-ref", "refs/remotes/origin/trunk", side)
    check(prod, record(side), repo, CI_DEFAULT_BRANCH="trunk")
    assert "ancestor of origin/main" in refused(prod, record(side), repo)
    on_trunk = dataclasses.replace(prod, default_branch="trunk")
    check(on_trunk, record(side), repo)


def test_a_missing_remote_branch_says_what_to_fetch(repo: Path, prod: Environment) -> None:
    git(repo, "update-ref", "-d", "refs/remotes/origin/main")
    message = refused(prod, record(git(repo, "rev-parse", "HEAD")), repo)
    assert "expected origin/main in" in message
    assert "fetch-depth: 0" in message


def test_no_git_checkout_is_one_line(tmp_path: Path, prod: Environment) -> None:
    message = refused(prod, record("a" * 40), tmp_path)
    assert f"expected a git checkout of it in {tmp_path}" in message


def test_without_promote_from_nothing_is_checked(tmp_path: Path, prod: Environment) -> None:
    """Today's behaviour for an environment that does not promote: no git, no refusal."""
    plain = dataclasses.replace(prod, promote_from=None)
    check(plain, record("not-a-sha", env="anywhere"), tmp_path)


@pytest.mark.parametrize("source", ["qa", "prod"])
def test_promote_from_must_name_another_environment(tmp_path: Path, source: str) -> None:
    """ci.yaml in a folder that links to the project's files, with prod promoting from
    ``source``: an unknown environment or itself."""
    for name in ("dockerfiles", "examples", "charts"):
        (tmp_path / name).symlink_to(ROOT / name)
    text = (ROOT / "ci.yaml").read_text()
    assert text.count("promote_from: staging") == 1
    (tmp_path / "ci.yaml").write_text(
        text.replace("promote_from: staging", f"promote_from: {source}")
    )
    with pytest.raises(ConfigError, match=rf"promote_from: '{source}' is not another environment"):
        config.load(tmp_path / "ci.yaml")


def test_ci_deploy_refuses_a_manifest_of_another_commit_before_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command with the real ci.yaml: one line, exit 2, no kubeconfig or Helm asked for."""
    cfg = config.load(ROOT / "ci.yaml")
    images = [
        release.ImageRef(i.name, f"reg/{i.name}", "sha256:" + "9" * 64, i.values_key)
        for i in cfg.images
    ]
    _, version = release.chart_meta(cfg.chart.path)
    rec = dataclasses.replace(record("e" * 40), images=images, chart_version=version)
    path = release.write_release(rec, tmp_path / "release")
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "KUBECONFIG_PROD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no helm, no kubectl: the check comes first
    args = ["-c", str(ROOT / "ci.yaml"), "-o", str(tmp_path / "out"), "deploy", "--env", "prod"]
    result = CliRunner().invoke(main, [*args, "--release-manifest", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1, result.output
    assert f"release manifest is for commit {'e' * 40}, expected the checked-out commit" in lines[0]
    assert "Traceback" not in result.output
    assert json.loads(path.read_text())["env"] == "staging"
