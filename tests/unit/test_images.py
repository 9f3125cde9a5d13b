"""Unit tests of the images step's pure logic: tags, Dockerfile parsing, input hashing, argv."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from docker.errors import APIError

from ci import config, registry
from ci.errors import BuildError, ConfigError, Location, RegistryError
from ci.images import builders, buildkit, credentials, gitinfo, inputs, lookup, plan, results
from ci.images import tags as tagging

DATA = Path(__file__).resolve().parents[1] / "data" / "images"
GIT = gitinfo.GitInfo(sha="0123456789abcdef0123456789abcdef01234567", branch="main")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the two-image test project (tests may change files in it)."""
    dest = tmp_path / "project"
    shutil.copytree(DATA, dest)
    return dest


@pytest.fixture
def cfg(project: Path) -> config.Config:
    return config.load(project / "ci.yaml")


# ----------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("main", "main"),
        ("feature/login-form", "feature-login-form"),
        ("Fix: bug #12", "Fix-bug-12"),
        ("-leading.dots", "leading.dots"),
        ("release/1.2", "release-1.2"),
        ("///", None),
        ("a" * 200, "a" * 128),
    ],
)
def test_sanitize_tag(name: str, expected: str | None) -> None:
    assert tagging.sanitize_tag(name) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("v1.2.3", ["1.2.3", "1.2", "1"]),
        ("2.0.10", ["2.0.10", "2.0", "2"]),
        ("v0.4.1", ["0.4.1", "0.4"]),
        ("v1.2.3-rc.1", ["1.2.3-rc.1"]),
        ("v1.2.3+build.7", ["1.2.3_build.7", "1.2", "1"]),
        ("release-5", []),
        ("v1.2", []),
    ],
)
def test_semver_tags(ref: str, expected: list[str]) -> None:
    assert tagging.semver_tags(ref) == expected


def test_image_tags_put_the_content_tag_last_and_skip_duplicates() -> None:
    git = gitinfo.GitInfo(sha=GIT.sha, branch=None, tag="v1.4.0")
    tags = tagging.image_tags(git, "inputs-abc")
    assert tags == (GIT.sha, "0123456", "1.4.0", "1.4", "1", "inputs-abc")
    branch = tagging.image_tags(dataclasses.replace(GIT, branch="feat/x"), "inputs-abc")
    assert branch == (GIT.sha, "0123456", "feat-x", "inputs-abc")


def test_non_version_tag_is_sanitised_not_expanded() -> None:
    git = gitinfo.GitInfo(sha=GIT.sha, tag="nightly/2026")
    assert tagging.image_tags(git, "inputs-1")[2] == "nightly-2026"


def test_version_is_the_release_or_the_short_sha() -> None:
    assert gitinfo.GitInfo(sha=GIT.sha, tag="v2.1.0").version == "2.1.0"
    assert GIT.version == "0123456"


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:acme/schedule.git", "https://github.com/acme/schedule"),
        ("ssh://git@github.com/acme/schedule.git", "https://github.com/acme/schedule"),
        ("https://user:token@github.com/acme/schedule.git", "https://github.com/acme/schedule"),
        ("https://gitlab.example.com/a/b", "https://gitlab.example.com/a/b"),
    ],
)
def test_https_url(remote: str, url: str) -> None:
    assert gitinfo.https_url(remote) == url


def test_git_info_under_actions_reads_the_environment(tmp_path: Path) -> None:
    env = {
        "GITHUB_SHA": GIT.sha,
        "GITHUB_REF_NAME": "v3.0.1",
        "GITHUB_REF_TYPE": "tag",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/schedule",
    }
    info = gitinfo.git_info(tmp_path, env)
    assert info == gitinfo.GitInfo(GIT.sha, None, "v3.0.1", "https://github.com/acme/schedule")
    pull = {
        **env,
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_REF_NAME": "12/merge",
        "GITHUB_HEAD_REF": "feature/x",
    }
    assert gitinfo.git_info(tmp_path, pull).branch == "feature/x"


def test_git_info_outside_a_repository_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a git repository"):
        gitinfo.git_info(tmp_path, {"PATH": os.environ["PATH"], "GIT_CEILING_DIRECTORIES": "/"})


# ----------------------------------------------------------------------------- dockerfile


def test_base_images_join_continuations_and_drop_comments() -> None:
    text = (
        "# c\nARG A=a:1 \\\n# inner comment\n  B='b:2'\n"
        "FROM $A \\\n  AS first\n\nRUN x \\\n# inner comment\n  && y\n"
        "FROM first\nFROM ${B}\n"
    )
    assert inputs.base_images(text, {}) == ["a:1", "b:2"]


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("$A/${B}", {"A": "x", "B": "y"}, "x/y"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A:+alt}", {"A": "set"}, "alt"),
        ("${A:+alt}", {}, ""),
    ],
)
def test_substitute(text: str, values: dict[str, str], expected: str) -> None:
    assert inputs.substitute(text, values) == expected


def test_base_images_substitute_args_and_skip_stage_names() -> None:
    text = (
        "ARG BUILD_IMAGE=maven:3-eclipse-temurin-21\n"
        "ARG RUNTIME_IMAGE=eclipse-temurin:21-jre\n"
        "FROM --platform=$BUILDPLATFORM ${BUILD_IMAGE} AS build\n"
        "RUN mvn package\n"
        "FROM build AS test\n"
        "FROM scratch AS empty\n"
        "FROM ${RUNTIME_IMAGE}\n"
        "COPY --from=build /x /x\n"
    )
    assert inputs.base_images(text, {}) == ["maven:3-eclipse-temurin-21", "eclipse-temurin:21-jre"]
    local = {"BUILD_IMAGE": "127.0.0.1:5000/base/maven:bookworm"}
    assert inputs.base_images(text, local)[0] == "127.0.0.1:5000/base/maven:bookworm"


# ----------------------------------------------------------------------------- context and hash


def test_context_files_follow_dockerignore(cfg: config.Config) -> None:
    api = cfg.image("api")
    files = inputs.context_files(api.context, api.dockerfile)
    assert "src/greeting.txt" in files
    assert not any(f.startswith("notes") for f in files)


def test_dockerfile_specific_ignore_file_wins(project: Path) -> None:
    dockerfile = project / "dockerfiles" / "api.Dockerfile"
    Path(f"{dockerfile}.dockerignore").write_text("src/farewell.txt\n", encoding="utf-8")
    files = inputs.context_files(project / "api", dockerfile)
    assert "src/farewell.txt" not in files
    assert "notes/readme.md" in files  # the context's own .dockerignore no longer applies


def _hash(cfg: config.Config, name: str = "api") -> str:
    image = cfg.image(name)
    text = image.dockerfile.read_text(encoding="utf-8")
    return inputs.input_hash(image, base_refs=inputs.base_images(text, image.build_args))


def test_input_hash_changes_with_kept_files_only(project: Path, cfg: config.Config) -> None:
    before = _hash(cfg)
    (project / "api" / "notes" / "readme.md").write_text("edited", encoding="utf-8")
    (project / "api" / "scratch.tmp").write_text("ignored", encoding="utf-8")
    assert _hash(cfg) == before
    (project / "api" / "src" / "greeting.txt").write_text("api greeting v2\n", encoding="utf-8")
    assert _hash(cfg) != before


def test_input_hash_ignores_timestamps_but_not_the_exec_bit(
    project: Path, cfg: config.Config
) -> None:
    before = _hash(cfg)
    target = project / "api" / "src" / "greeting.txt"
    os.utime(target, (1, 1))
    assert _hash(cfg) == before
    target.chmod(0o755)
    assert _hash(cfg) != before


def test_input_hash_covers_dockerfile_args_target_platforms_and_bases(cfg: config.Config) -> None:
    api = cfg.image("api")
    base = inputs.input_hash(api, base_refs=["local/debian:bookworm"])
    variants = [
        dataclasses.replace(api, build_args={"BASE_IMAGE": "other:1"}),
        dataclasses.replace(api, target="build"),
        dataclasses.replace(api, platforms=("linux/arm64",)),
    ]
    hashes = {inputs.input_hash(v, base_refs=["local/debian:bookworm"]) for v in variants}
    hashes.add(inputs.input_hash(api, base_refs=["local/debian:trixie"]))
    assert base not in hashes
    assert len(hashes) == 4


def test_each_image_hashes_its_own_context(cfg: config.Config) -> None:
    assert _hash(cfg, "api") != _hash(cfg, "web")


# ----------------------------------------------------------------------------- plan


def test_plan_builds_tags_labels_and_args(cfg: config.Config) -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    git = dataclasses.replace(GIT, source="https://github.com/acme/schedule")
    jobs = plan.plan(cfg, git, now=now)
    assert [j.name for j in jobs] == ["api", "web"]
    api = jobs[0]
    assert api.repository == "127.0.0.1:5000/images-test/api"
    assert api.tags[:3] == (GIT.sha, "0123456", "main")
    assert api.tags[-1] == api.content_tag == "inputs-" + api.input_hash[:32]
    assert api.cache_ref == "127.0.0.1:5000/images-test/api:buildcache-api"
    assert api.labels["org.opencontainers.image.revision"] == GIT.sha
    assert api.labels["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"
    assert api.labels["org.opencontainers.image.source"] == "https://github.com/acme/schedule"
    assert api.build_args["VCS_REF"] == GIT.sha
    assert api.build_args["BUILD_DATE"] == "2026-01-02T03:04:05Z"
    assert api.base_refs == ("local/debian:bookworm",)
    later = plan.plan(cfg, dataclasses.replace(GIT, sha="f" * 40), now=now)[0]
    assert later.input_hash == api.input_hash  # a new commit alone changes no content


def test_only_selects_and_unknown_names_list_the_known_ones(cfg: config.Config) -> None:
    assert [j.name for j in plan.plan(cfg, GIT, only=["web"])] == ["web"]
    with pytest.raises(ConfigError, match=r"unknown image 'nope' \(expected one of: api, web\)"):
        plan.select_images(cfg, ["nope"])


def test_missing_context_names_the_image(project: Path, cfg: config.Config) -> None:
    shutil.rmtree(project / "web")
    with pytest.raises(
        BuildError, match=r"ci.yaml: image web: build context .*web does not exist$"
    ):
        plan.plan(cfg, GIT)


# ----------------------------------------------------------------------------- builders


def _builder(**kwargs: object) -> builders.BuildxBuilder:
    return builders.BuildxBuilder(Path("/opt/buildx"), metadata_dir=Path("/out"), **kwargs)  # type: ignore[arg-type]


def test_buildx_argv_pushes_with_a_cache_ref_per_image(cfg: config.Config) -> None:
    jobs = plan.plan(cfg, GIT)
    argvs = [_builder(insecure=True).argv(j, push=True, metadata=Path("/m.json")) for j in jobs]
    api = argvs[0]
    assert api[:4] == ("/opt/buildx", "build", "--builder", "ci")
    ref = "127.0.0.1:5000/images-test/api"
    assert f"type=registry,ref={ref}:buildcache-api,registry.insecure=true" in api
    assert f"type=registry,ref={ref}:buildcache-api,mode=max,registry.insecure=true" in api
    assert f"type=image,name={ref}:{GIT.sha},push=true,registry.insecure=true" in api
    assert api[api.index("--metadata-file") + 1] == "/m.json"
    assert api[-1] == str(cfg.image("api").context)
    assert "BASE_IMAGE=local/debian:bookworm" in api
    assert f"org.opencontainers.image.revision={GIT.sha}" in api
    web_cache = [a for a in argvs[1] if "buildcache" in a]
    assert all("web:buildcache-web" in a for a in web_cache)
    assert len(web_cache) == 2


def test_buildx_without_push_exports_no_cache_and_pushes_nothing(cfg: config.Config) -> None:
    job = plan.plan(cfg, GIT)[0]
    argv = _builder().argv(job, push=False, metadata=Path("/m.json"))
    assert "--cache-to" not in argv
    assert not any("push=true" in a for a in argv)
    assert "type=cacheonly" in argv
    no_cache = _builder(cache=False).argv(job, push=True, metadata=Path("/m.json"))
    assert "--cache-from" not in no_cache
    assert "--cache-to" not in no_cache


def test_buildx_target_and_platforms(cfg: config.Config) -> None:
    api = dataclasses.replace(
        cfg.image("api"), target="build", platforms=("linux/amd64", "linux/arm64")
    )
    cfg2 = dataclasses.replace(cfg, images=(api,))
    argv = _builder().argv(plan.plan(cfg2, GIT)[0], push=False, metadata=Path("/m"))
    assert argv[argv.index("--target") + 1] == "build"
    assert argv[argv.index("--platform") + 1] == "linux/amd64,linux/arm64"


def test_buildkit_config_marks_local_registries_plain_http() -> None:
    text = buildkit.buildkit_config(["127.0.0.1:5000", "127.0.0.1:5000", "localhost:5001"])
    assert text.count("[registry.") == 2
    assert '[registry."127.0.0.1:5000"]\n  http = true\n  insecure = true' in text


def test_build_errors_point_at_the_dockerfile_line(cfg: config.Config) -> None:
    job = plan.plan(cfg, GIT)[0]
    log = [
        "#5 [internal] load build definition",
        "ERROR: failed to solve: dockerfile parse error on line 3: unknown instruction: RUNN",
    ]
    reason = builders._buildx_reason(log)
    assert reason == "failed to solve: dockerfile parse error on line 3: unknown instruction: RUNN"
    err = builders._build_error(job, reason, log)
    assert err.message.startswith("image api: build failed: failed to solve")
    assert err.location == Location(str(cfg.image("api").dockerfile), 3)
    assert "RUNN" in err.detail


def test_step_counter_reports_few_lines() -> None:
    seen: list[str] = []
    counter = builders.StepCounter("api", lambda n, s: seen.append(f"{n} {s}"), interval=3600)
    for i in range(1, 20):
        counter.step(f"step {i}/19")
    for layer in ("a", "b", "c"):
        counter.layer(layer, done=False)
    for layer in ("a", "b", "c", "a"):
        counter.layer(layer, done=True)
    assert seen == [
        "api building step 1/19",
        "api pushing 0/1 layers",
        "api pushing 1/3 layers",
        "api pushing 2/3 layers",
        "api pushing 3/3 layers",
    ]


# ----------------------------------------------------------------------------- credentials


def _registry(host: str) -> config.Registry:
    return config.Registry(host, "ns", False, "REG_USER", "REG_PASS", True)


def test_credentials_come_from_the_configured_variables() -> None:
    env = {"REG_USER": "bot", "REG_PASS": "pw", "GITHUB_ACTOR": "x", "GITHUB_TOKEN": "t"}
    assert credentials.credentials(_registry("registry.example.com"), env) == ("bot", "pw")
    assert credentials.credentials(_registry("registry.example.com"), {"GITHUB_TOKEN": "t"}) is None


def test_ghcr_falls_back_to_the_actions_token() -> None:
    env = {"GITHUB_ACTOR": "octo", "GITHUB_TOKEN": "ghs_secret"}
    assert credentials.credentials(_registry("ghcr.io"), env) == ("octo", "ghs_secret")


def test_login_without_credentials_names_the_variables(cfg: config.Config) -> None:
    with pytest.raises(ConfigError, match="set REGISTRY_USERNAME and REGISTRY_PASSWORD"):
        credentials.login(cfg, {})


# ----------------------------------------------------------------------------- results


def test_images_json_records_every_image(tmp_path: Path, cfg: config.Config) -> None:
    jobs = plan.plan(cfg, GIT)
    res = [results.pending(j) for j in jobs]
    res[0].status, res[0].digest, res[0].pushed, res[0].duration = "built", "sha256:aa", True, 1.234
    res[1].status, res[1].digest = "cached", "sha256:bb"
    res[0].log = ["step 1", "step 2"]
    result = results.ImagesResult("docker", True, GIT, res, 2.0)
    path = results.write_result(result, tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    api, web = data["images"]
    assert api["ref"] == "127.0.0.1:5000/images-test/api@sha256:aa"
    assert api["duration"] == 1.23
    assert api["status"] == "built"
    assert api["input_hash"] == jobs[0].input_hash
    assert api["tags"] == list(jobs[0].tags)
    assert web["status"] == "cached"
    assert web["ref"].endswith("@sha256:bb")
    assert (tmp_path / "logs" / "images" / "api.log").read_text() == "step 1\nstep 2\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_raise_first_counts_the_other_failures() -> None:
    result = results.ImagesResult("docker", False, GIT, [])
    result.errors = [BuildError("image a: broke"), BuildError("image b: broke")]
    with pytest.raises(BuildError, match=r"^image a: broke \(and 1 more image\(s\) failed\)$"):
        result.raise_first()


def test_buildx_no_cache_skips_the_import_but_still_refreshes_the_cache(
    cfg: config.Config,
) -> None:
    job = plan.plan(cfg, GIT)[0]
    builder = _builder()
    builder.no_cache = True
    argv = builder.argv(job, push=True, metadata=Path("/m.json"))
    assert "--no-cache" in argv
    assert "--cache-from" not in argv
    assert "--cache-to" in argv


def test_run_failures_point_at_the_line_buildkit_quotes(cfg: config.Config) -> None:
    job = plan.plan(cfg, GIT)[0]
    log = [
        '#9 ERROR: process "/bin/sh -c cat src/*.txt" did not complete successfully: exit code: 1',
        "------",
        " > [build 4/4] RUN cat src/*.txt:",
        "------",
        "api.Dockerfile:6",
        'ERROR: failed to solve: process "/bin/sh -c cat src/*.txt" did not complete successfully',
    ]
    err = builders._build_error(job, builders._buildx_reason(log), log)
    assert err.location == Location(str(cfg.image("api").dockerfile), 6)
    plain = builders._build_error(job, "The command returned a non-zero code: 2 (line 7 of x)", [])
    assert plain.location is None


def test_a_base_rebuilt_under_the_same_tag_changes_the_hash(cfg: config.Config) -> None:
    pointing = {"local/debian:bookworm": "sha256:old"}
    before = plan.plan(cfg, GIT, resolve=pointing.get)
    pointing["local/debian:bookworm"] = "sha256:new"
    after = plan.plan(cfg, GIT, resolve=pointing.get)
    assert [j.input_hash for j in before] != [j.input_hash for j in after]
    assert before[0].base_refs == after[0].base_refs == ("local/debian:bookworm",)
    again = plan.plan(cfg, GIT, resolve=pointing.get)
    assert [j.input_hash for j in again] == [j.input_hash for j in after]


def test_socket_alive_tells_a_listening_socket_from_a_stale_file() -> None:
    """A socket file left by a daemon that died must not pass for a running daemon."""
    import socket
    import tempfile

    # AF_UNIX paths are short; pytest's tmp_path can exceed the limit.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "d.sock"
        assert not buildkit.socket_alive(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        assert buildkit.socket_alive(path)
        server.close()  # the file stays, nothing listens: what a killed daemon leaves
        assert path.exists()
        assert not buildkit.socket_alive(path)


# ----------------------------------------------------------------------------- retries


class _RegistryData:
    """``client.images`` of a Docker SDK client: ``get_registry_data`` answers from a script."""

    def __init__(self, answers: list[Exception | str]) -> None:
        self.answers, self.calls = answers, 0

    def get_registry_data(self, _ref: str) -> object:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dataclasses.make_dataclass("Data", [("id", str)])(answer)


def test_lookup_retries_daemon_errors_but_not_a_missing_tag() -> None:
    daemon = _RegistryData([APIError('500 ("connection refused")'), "sha256:aa"])
    client = type("Client", (), {"images": daemon})()
    assert lookup.Lookup(client, registry.Client("h:1"), backoff=0).digest("h:1/a", "t") == (
        "sha256:aa"
    )
    assert daemon.calls == 2
    missing = _RegistryData([APIError('404 ("manifest unknown")')])
    client = type("Client", (), {"images": missing})()
    assert lookup.Lookup(client, registry.Client("h:1"), backoff=0).digest("h:1/a", "t") is None
    assert missing.calls == 1
    down = _RegistryData([APIError('500 ("connection refused")')] * 3)
    client = type("Client", (), {"images": down})()
    with pytest.raises(RegistryError, match=r"^registry lookup of h:1/a:t failed: connection"):
        lookup.Lookup(client, registry.Client("h:1"), retries=2, backoff=0).digest("h:1/a", "t")
    assert down.calls == 3


def test_docker_push_retries_registry_errors_and_names_the_last(cfg: config.Config) -> None:
    job = plan.plan(cfg, GIT)[0]
    pushes = [[{"error": "denied"}], [{"status": "Pushed"}], [{"error": "still denied"}]]
    api = type("Api", (), {"push": lambda *_a, **_k: iter(pushes.pop(0))})()
    client = type("Client", (), {"api": api, "version": lambda _self: {}})()
    seen: list[str] = []
    builder = builders.DockerBuilder(client, backoff=0)
    with pytest.raises(RegistryError, match=r"push to .*/api failed: still denied$"):
        builder._push(job, lambda _n, status: seen.append(status), [])
    assert seen == [
        "push failed (denied); retrying",
        "push failed (the push reported no digest); retrying",
    ]
