"""Unit tests of the ``tags`` rules: each rule type, the defaults, ``latest``, PRs, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ci import config
from ci.config import TagRule
from ci.errors import ConfigError
from ci.images import gitinfo, plan
from ci.images import tags as tagging

DATA = Path(__file__).resolve().parents[1] / "data" / "images"
SHA = "0123456789abcdef0123456789abcdef01234567"
OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
CONTENT = "inputs-0f0f"


def _git(**facts: object) -> gitinfo.GitInfo:
    return gitinfo.GitInfo(sha=SHA, **facts)  # type: ignore[arg-type]


def _tags(git: gitinfo.GitInfo, *rules: TagRule, default_branch: str | None = None) -> list[str]:
    """The rule tags alone (the content tag, always last, is checked once on its own)."""
    out = tagging.image_tags(git, CONTENT, rules, default_branch)
    assert out[-1] == CONTENT
    return list(out[:-1])


def _project(tmp_path: Path, extra: dict[str, object], image_tags: object = None) -> Path:
    """The two-image test project with ``extra`` top-level keys (and api's own ``tags``)."""
    dest = tmp_path / "project"
    shutil.copytree(DATA, dest)
    path = dest / "ci.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(extra)
    if image_tags is not None:
        data["images"][0]["tags"] = image_tags
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("git", "expected"),
    [
        (_git(branch="main"), [SHA, "0123456", "main"]),
        (_git(branch="feature/login"), [SHA, "0123456", "feature-login"]),
        (_git(tag="v1.4.0"), [SHA, "0123456", "1.4.0", "1.4", "1"]),
        (_git(tag="v0.4.1"), [SHA, "0123456", "0.4.1", "0.4"]),
        (_git(tag="v2.0.0-rc.1"), [SHA, "0123456", "2.0.0-rc.1"]),
        (_git(tag="v1.2.3+build.7"), [SHA, "0123456", "1.2.3_build.7", "1.2", "1"]),
        (_git(tag="nightly/2026"), [SHA, "0123456", "nightly-2026"]),
        (_git(branch="main", tag="v3.1.0"), [SHA, "0123456", "main", "3.1.0", "3.1", "3"]),
        (_git(branch="feature/x", pr=12), [SHA, "0123456", "feature-x"]),
    ],
)
def test_default_rules_give_the_tags_of_before(git: gitinfo.GitInfo, expected: list[str]) -> None:
    """No ``latest``, no ``pr-N``: the defaults add nothing the earlier scheme did not write."""
    assert _tags(git, *tagging.default_rules()) == expected
    assert list(tagging.image_tags(git, CONTENT)) == [*expected, CONTENT]


def test_a_file_without_tags_loads_the_default_rules(tmp_path: Path) -> None:
    cfg = config.load(_project(tmp_path, {}))
    assert cfg.tags.default_branch == "main"
    assert cfg.tags.rules == tagging.default_rules()
    assert cfg.tag_rules(cfg.images[0]) == tagging.default_rules()
    assert [r.type for r in tagging.default_rules()] == [
        "sha", "sha", "branch", "semver", "semver", "semver", "tag"
    ]  # fmt: skip


def test_the_content_tag_is_last_and_unchanged_by_the_rules(tmp_path: Path) -> None:
    cfg = config.load(_project(tmp_path, {"tags": {"rules": [{"type": "raw", "value": "x"}]}}))
    job = plan.plan(cfg, _git(branch="main"))[0]
    assert job.tags == ("x", job.content_tag)
    assert job.content_tag == plan.CONTENT_TAG_PREFIX + job.input_hash[: plan.CONTENT_HASH_LEN]
    defaults = config.load(_project(tmp_path / "d", {}))
    assert plan.plan(defaults, _git(branch="main"))[0].content_tag == job.content_tag


# ----------------------------------------------------------------------------- each type


def test_sha_rule_with_prefix_and_length() -> None:
    git = _git(branch="main")
    assert _tags(git, TagRule("sha")) == [SHA]
    assert _tags(git, TagRule("sha", prefix="sha-", length=7)) == ["sha-0123456"]
    assert _tags(git, TagRule("sha", length=12, suffix="-slim")) == ["0123456789ab-slim"]


def test_branch_rule_sanitises_and_needs_a_branch() -> None:
    assert _tags(_git(branch="feature/x"), TagRule("branch")) == ["feature-x"]
    assert _tags(_git(branch="Fix: #12"), TagRule("branch", prefix="br-")) == ["br-Fix-12"]
    assert _tags(_git(tag="v1.0.0"), TagRule("branch")) == []
    assert _tags(_git(branch="///"), TagRule("branch")) == []


@pytest.mark.parametrize(
    ("tag", "pattern", "expected"),
    [
        ("v1.2.3", "{{version}}", ["1.2.3"]),
        ("v1.2.3", "{{major}}.{{minor}}", ["1.2"]),
        ("v1.2.3", "{{major}}", ["1"]),
        ("v1.2.3", "{{raw}}", ["v1.2.3"]),
        ("v1.2.3", "v{{major}}.{{minor}}.{{patch}}-java", ["v1.2.3-java"]),
        ("1.2.3", "{{version}}", ["1.2.3"]),
        ("v1.2.3-rc.1", "{{version}}", ["1.2.3-rc.1"]),
        ("v1.2.3-rc.1", "{{raw}}", ["v1.2.3-rc.1"]),
        ("v1.2.3-rc.1", "{{major}}.{{minor}}", []),
        ("v1.2.3-rc.1", "{{major}}", []),
        ("v1.2.3-beta.2+exp", "{{version}}", ["1.2.3-beta.2_exp"]),
        ("v0.9.0", "{{major}}", []),
        ("v0.9.0", "{{major}}.{{minor}}", ["0.9"]),
        ("v1.2", "{{version}}", []),
        ("release-5", "{{version}}", []),
    ],
)
def test_semver_rule_patterns(tag: str, pattern: str, expected: list[str]) -> None:
    assert _tags(_git(tag=tag), TagRule("semver", pattern=pattern)) == expected


def test_semver_major_zero_opts_into_a_bare_zero() -> None:
    rule = TagRule("semver", pattern="{{major}}", major_zero=True)
    assert _tags(_git(tag="v0.9.0"), rule) == ["0"]
    assert _tags(_git(tag="v0.9.0-rc.1"), rule) == []


def test_tag_rule_takes_non_versions_unless_told_otherwise() -> None:
    assert _tags(_git(tag="nightly/2026"), TagRule("tag")) == ["nightly-2026"]
    assert _tags(_git(tag="v1.0.0"), TagRule("tag")) == []
    assert _tags(_git(tag="v1.0.0+b.1"), TagRule("tag", include_versions=True)) == ["v1.0.0-b.1"]
    assert _tags(_git(branch="main"), TagRule("tag")) == []


def test_pr_rule_gives_pr_n_in_a_pull_request_only() -> None:
    assert _tags(_git(branch="feature/x", pr=42), TagRule("pr")) == ["pr-42"]
    assert _tags(_git(branch="main"), TagRule("pr")) == []
    assert _tags(_git(pr=7), TagRule("pr", suffix="-web")) == ["pr-7-web"]


def test_raw_rule_is_the_value() -> None:
    assert _tags(_git(), TagRule("raw", value="edge")) == ["edge"]


# ----------------------------------------------------------------------------- latest


@pytest.mark.parametrize(
    ("git", "default_branch", "latest"),
    [
        (_git(branch="main"), None, True),
        (_git(branch="develop"), None, False),
        (_git(branch="develop"), "develop", True),
        (_git(branch="main"), "develop", False),
        (_git(branch="main", default_branch="trunk"), "main", False),
        (_git(branch="trunk", default_branch="trunk"), "main", True),
        (_git(branch="main", pr=3), None, False),
        (_git(tag="v1.0.0"), None, False),
        (_git(branch="main", tag="v1.0.0"), None, True),
        (_git(branch="main", tag="v1.0.0-rc.1"), None, False),
    ],
)
def test_latest_only_on_the_default_branch(
    git: gitinfo.GitInfo, default_branch: str | None, latest: bool
) -> None:
    """The environment's default branch (in ``git``) wins over the configured one."""
    tags = _tags(git, TagRule("latest"), default_branch=default_branch)
    assert tags == (["latest"] if latest else [])


# ----------------------------------------------------------------------------- enable


@pytest.mark.parametrize(
    ("enable", "git", "applies"),
    [
        (True, _git(), True),
        (False, _git(branch="main"), False),
        ("default_branch", _git(branch="main"), True),
        ("default_branch", _git(branch="dev"), False),
        ("default_branch", _git(branch="main", pr=1), False),
        ("branch", _git(branch="dev"), True),
        ("branch", _git(branch="dev", pr=1), False),
        ("branch", _git(tag="v1.0.0"), False),
        ("tag", _git(tag="v1.0.0"), True),
        ("tag", _git(branch="main"), False),
        ("pr", _git(branch="x", pr=5), True),
        ("pr", _git(branch="x"), False),
    ],
)
def test_enable_conditions(enable: bool | str, git: gitinfo.GitInfo, applies: bool) -> None:
    assert _tags(git, TagRule("raw", value="nightly", enable=enable)) == (
        ["nightly"] if applies else []
    )


# ----------------------------------------------------------------------------- sanitising


def test_every_tag_is_a_valid_oci_tag_and_written_once() -> None:
    git = _git(branch="-/" + "Ü" * 3 + "x" * 300, tag="v1.0.0", pr=9)
    rules = [
        TagRule("branch", prefix="b-"),
        TagRule("branch", prefix="b-"),
        TagRule("sha", prefix="sha-", length=7),
        TagRule("semver", pattern="{{raw}}"),
        TagRule("pr"),
    ]
    tags = _tags(git, *rules)
    assert len(tags) == 4
    assert all(OCI_TAG.match(t) for t in tags), tags
    assert tags[0] == ("b---" + "x" * 300)[:128]  # "-" kept, the run "/ÜÜÜ" one "-"


# ----------------------------------------------------------------------------- git facts


def _actions_env(**extra: str) -> dict[str, str]:
    return {"GITHUB_SHA": SHA, "GITHUB_REF_TYPE": "branch", "GITHUB_REF_NAME": "main", **extra}


@pytest.mark.parametrize(
    ("env", "pr"),
    [
        ({"GITHUB_REF": "refs/pull/12/merge", "GITHUB_EVENT_NAME": "pull_request"}, 12),
        ({"GITHUB_REF": "refs/pull/7/head"}, 7),
        ({"GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_NAME": "push"}, None),
        ({"GITHUB_REF": "refs/tags/v1.0.0"}, None),
        ({"GITHUB_REF": "refs/pull/x/merge"}, None),
    ],
)
def test_pull_request_number_from_the_ref(
    tmp_path: Path, env: dict[str, str], pr: int | None
) -> None:
    assert gitinfo.git_info(tmp_path, _actions_env(**env)).pr == pr


def test_pull_request_target_reads_the_number_and_default_branch_from_the_event(
    tmp_path: Path,
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 31, "repository": {"default_branch": "trunk"}}))
    env = _actions_env(
        GITHUB_REF="refs/heads/trunk",
        GITHUB_EVENT_NAME="pull_request_target",
        GITHUB_EVENT_PATH=str(event),
        GITHUB_HEAD_REF="feature/y",
    )
    info = gitinfo.git_info(tmp_path, env)
    assert (info.pr, info.default_branch, info.branch) == (31, "trunk", "feature/y")
    assert _tags(info, TagRule("pr"), TagRule("branch")) == ["pr-31", "feature-y"]
    push = {**env, "GITHUB_EVENT_NAME": "push"}
    assert gitinfo.git_info(tmp_path, push).pr is None


def test_default_branch_variable_wins_and_an_unreadable_event_is_ignored(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text("not json")
    env = _actions_env(GITHUB_EVENT_PATH=str(event), GITHUB_EVENT_NAME="pull_request")
    assert gitinfo.git_info(tmp_path, env).default_branch is None
    assert gitinfo.git_info(tmp_path, env).pr is None
    named = {**env, "CI_DEFAULT_BRANCH": "develop"}
    assert gitinfo.git_info(tmp_path, named).default_branch == "develop"


# ----------------------------------------------------------------------------- configuration


def test_configured_rules_and_a_per_image_override(tmp_path: Path) -> None:
    tags = {
        "default_branch": "develop",
        "rules": [
            {"type": "sha", "prefix": "sha-", "length": 7},
            {"type": "branch"},
            {"type": "latest"},
        ],
    }
    cfg = config.load(_project(tmp_path, {"tags": tags}, image_tags=[{"type": "pr"}]))
    git = _git(branch="develop")
    api, web = plan.plan(cfg, git)
    assert api.tags == (api.content_tag,)
    assert web.tags == ("sha-0123456", "develop", "latest", web.content_tag)
    pull = plan.plan(cfg, _git(branch="feature/z", pr=4))
    assert [j.tags[:-1] for j in pull] == [("pr-4",), ("sha-0123456", "feature-z")]
    assert cfg.data["tags"]["rules"][0]["enable"] is True  # defaults filled for `config show`


@pytest.mark.parametrize(
    ("tags", "image_tags", "message"),
    [
        (
            {"rules": [{"type": "sha"}, {"type": "commit"}]},
            None,
            "tags.rules[1].type: expected one of: sha, branch, semver, tag, pr, raw, latest;",
        ),
        ({"rules": [{"type": "semver"}]}, None, "tags.rules[0]: missing required key 'pattern'"),
        ({"rules": [{"type": "raw"}]}, None, "tags.rules[0]: missing required key 'value'"),
        (
            {"rules": [{"type": "semver", "pattern": "{{majr}}"}]},
            None,
            "tags.rules[0].pattern: invalid value",
        ),
        (
            {"rules": [{"type": "raw", "value": "-bad/tag"}]},
            None,
            "tags.rules[0].value: invalid value",
        ),
        (
            {"rules": [{"type": "sha", "length": 2}]},
            None,
            "tags.rules[0].length: expected at least 4, got 2",
        ),
        (
            {"rules": [{"type": "branch", "length": 7}]},
            None,
            "tags.rules[0].length: not an option of a 'branch' rule "
            "(expected one of: type, prefix, suffix, enable)",
        ),
        (
            {"rules": [{"type": "sha", "enable": "sometimes"}]},
            None,
            "tags.rules[0].enable: expected one of: true, false, branch, default_branch, tag, pr;",
        ),
        (
            {"rule": []},
            None,
            "tags.rule: unknown key 'rule' (expected one of: default_branch, rules)",
        ),
        (
            {},
            [{"type": "pr", "pattern": "{{version}}"}],
            "images[0].tags[0].pattern: not an option of a 'pr' rule",
        ),
    ],
)
def test_a_bad_rule_is_one_line_naming_the_key(
    tmp_path: Path, tags: dict[str, object], image_tags: object, message: str
) -> None:
    path = _project(tmp_path, {"tags": tags}, image_tags=image_tags)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    text = caught.value.message
    assert "\n" not in text
    assert text.startswith(message), text
    assert caught.value.location is not None
    assert caught.value.location.file == str(path)
