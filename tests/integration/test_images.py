"""``ci images build/login`` against the real Docker daemon, BuildKit and the local registry.

Results are checked where a deploy would find them: through the registry's HTTP API (digests
behind every tag, labels, the user the image runs as).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from ci import config, images, tools
from ci.errors import BuildError
from tests.integration.fixtures_images import (
    REGISTRY,
    ROOT,
    Project,
    clean_namespace,
    debian_base_fixture,  # noqa: F401 - a fixture, used by name
    image_config,
    project_fixture,  # noqa: F401 - a fixture, used by name
    tag_digests,
)

pytestmark = pytest.mark.integration


def _ok(proc: Any) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def _check_pushed(proj: Project, name: str, result: dict[str, Any], sha: str) -> None:
    """Every tag points at the recorded digest; labels and user are what the step promised."""
    repo = proj.repo(name)
    served = tag_digests(REGISTRY, repo)
    for tag in result["tags"]:
        assert served.get(tag) == result["digest"], f"{repo}:{tag}"
    assert result["tags"][:3] == [sha, sha[:7], "main"]
    assert result["tags"][-1] == result["content_tag"]
    cfg = image_config(REGISTRY, repo, sha)["config"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.revision"] == sha
    assert labels["org.opencontainers.image.version"] == sha[:7]
    assert labels["org.opencontainers.image.created"].endswith("Z")
    user = cfg.get("User", "")
    assert user, f"{repo} runs as root (no USER)"
    assert user.split(":")[0] not in ("0", "root"), f"{repo} runs as {user}"


def _build(proj: Project, builder: str, *args: str) -> dict[str, dict[str, Any]]:
    proc = proj.ci("images", "build", "--push", "--builder", builder, *args)
    _ok(proc)
    return proj.results()


def test_docker_builder_builds_once_then_skips_and_rebuilds_only_what_changed(
    project: Project,
) -> None:
    sha = project.head()
    cold = _build(project, "docker")
    assert {n: r["status"] for n, r in cold.items()} == {"api": "built", "web": "built"}
    for name, result in cold.items():
        _check_pushed(project, name, result, sha)

    proc = project.ci("images", "build", "--push", "--builder", "docker")
    _ok(proc)
    warm = project.results()
    assert {n: r["status"] for n, r in warm.items()} == {"api": "cached", "web": "cached"}
    assert {n: r["digest"] for n, r in warm.items()} == {n: r["digest"] for n, r in cold.items()}
    assert "cached (inputs-" in proc.stdout
    assert "building" not in proc.stdout
    assert (project.out / "logs" / "images" / "api.log").read_text().strip() == ""

    (project.root / "api" / "notes" / "readme.md").write_text("ignored by .dockerignore\n")
    sha2 = project.commit("docs only")
    after_docs = _build(project, "docker")
    assert {n: r["status"] for n, r in after_docs.items()} == {"api": "cached", "web": "cached"}
    # The new commit's tags were added to the existing manifests without building.
    assert tag_digests(REGISTRY, project.repo("web"))[sha2] == cold["web"]["digest"]

    (project.root / "api" / "src" / "greeting.txt").write_text("api greeting v2\n")
    sha3 = project.commit("change api")
    changed = _build(project, "docker")
    assert changed["api"]["status"] == "built"
    assert changed["web"]["status"] == "cached"
    assert changed["api"]["digest"] != cold["api"]["digest"]
    assert changed["api"]["content_tag"] != cold["api"]["content_tag"]
    _check_pushed(project, "api", changed["api"], sha3)
    # The old content tag still names the old image: content tags never move.
    old = tag_digests(REGISTRY, project.repo("api"))[cold["api"]["content_tag"]]
    assert old == cold["api"]["digest"]


def test_only_builds_the_named_image_and_rejects_unknown_names(project: Project) -> None:
    proc = project.ci("images", "build", "--builder", "docker", "--only", "web")
    _ok(proc)
    assert list(project.results()) == ["web"]
    assert project.results()["web"]["pushed"] is False
    bad = project.ci("images", "build", "--only", "nope")
    assert bad.returncode == 2
    assert "unknown image 'nope' (expected one of: api, web)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_buildx_builder_pushes_with_a_registry_cache_per_image(project: Project) -> None:
    try:
        tools.require("buildx")
        tools.require("buildkitd")
    except Exception as exc:  # a missing tool fails the test, it never skips it
        pytest.fail(f"buildx path not testable: {exc}")
    project.env["TEST_BASE_IMAGE"] = f"{REGISTRY}/base/debian:bookworm"
    sha = project.head()
    cold = _build(project, "buildx")
    assert {n: r["status"] for n, r in cold.items()} == {"api": "built", "web": "built"}
    for name, result in cold.items():
        _check_pushed(project, name, result, sha)
        cache = tag_digests(REGISTRY, project.repo(name))
        assert f"buildcache-{name}" in cache, f"no cache ref for {name}: {sorted(cache)}"
    warm = _build(project, "buildx")
    assert {n: r["status"] for n, r in warm.items()} == {"api": "cached", "web": "cached"}
    # A change with the registry cache warm rebuilds only the changed image.
    (project.root / "web" / "site" / "index.html").write_text('<div id="root">web v2</div>\n')
    project.commit("change web")
    changed = _build(project, "buildx")
    assert changed["web"]["status"] == "built"
    assert changed["api"]["status"] == "cached"


def test_actions_outputs_and_summary(project: Project, tmp_path: Path) -> None:
    outputs, summary = tmp_path / "outputs", tmp_path / "summary.md"
    proc = project.ci(
        "images",
        "build",
        "--push",
        "--builder",
        "docker",
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(outputs),
        GITHUB_STEP_SUMMARY=str(summary),
    )
    _ok(proc)
    results = project.results()
    text = outputs.read_text(encoding="utf-8")
    for name, result in results.items():
        assert f"{name}-digest<<" in text
        assert result["digest"] in text
    assert "::group::build log: api" in proc.stdout
    assert "| api | built | sha256:" in summary.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- errors


def test_registry_down_is_one_line_naming_the_images(project: Project) -> None:
    """Unreachable is an environment not ready (exit 3); the last good record stays."""
    project.out.mkdir(parents=True, exist_ok=True)
    good = project.out / "images.json"
    good.write_text('{"images": []}\n', encoding="utf-8")
    proc = project.ci(
        "images", "build", "--push", "--builder", "docker", CI_REGISTRY="127.0.0.1:5999"
    )
    assert proc.returncode == 3, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: cannot push api, web: registry 127.0.0.1:5999 unreachable")
    assert "connection refused" in first
    assert good.read_text(encoding="utf-8") == '{"images": []}\n'
    failed = json.loads((project.out / "images.failed.json").read_text(encoding="utf-8"))
    assert failed["push"] is True


def test_docker_daemon_down_names_the_images(project: Project) -> None:
    proc = project.ci(
        "images", "build", "--builder", "docker", DOCKER_HOST="unix:///tmp/no-such-docker.sock"
    )
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: cannot build api, web: --builder docker: docker is not avail")
    assert "docker daemon not reachable at unix:///tmp/no-such-docker.sock" in line


def test_dockerfile_syntax_error_points_at_the_line(project: Project) -> None:
    shutil.copy(project.root / "broken" / "syntax.Dockerfile", project.root / "web" / "Dockerfile")
    project.commit("break web")
    proc = project.ci("images", "build", "--builder", "docker")
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()[0]
    assert "web/Dockerfile:3: image web: build failed:" in first
    assert "unknown instruction: RUNN" in first
    # The other image still finished; the failed run is recorded beside images.json, not in it.
    failed = json.loads((project.out / "images.failed.json").read_text(encoding="utf-8"))
    assert {i["name"]: i["status"] for i in failed["images"]} == {"api": "built", "web": "failed"}
    assert not (project.out / "images.json").exists()


def test_missing_build_context_names_the_image(project: Project) -> None:
    cfg = config.load(project.root / "ci.yaml")
    shutil.rmtree(project.root / "api")
    with pytest.raises(BuildError, match=r"image api: build context .* does not exist"):
        images.build_images(cfg, out_dir=project.out, builder="docker")
    proc = project.ci("images", "build")
    assert proc.returncode == 2
    assert "context" in proc.stderr
    assert "'api' does not exist" in proc.stderr


# ----------------------------------------------------------------------------- login


def test_login_masks_the_password_and_passes_it_on_stdin(project: Project, tmp_path: Path) -> None:
    secret = "pw-" + os.urandom(6).hex()
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    env = {
        "REGISTRY_USERNAME": "ci-bot",
        "REGISTRY_PASSWORD": secret,
        "DOCKER_CONFIG": str(docker_config),
    }
    proc = project.ci("images", "login", env=env)
    _ok(proc)
    assert proc.stdout.strip() == f"logged in to {REGISTRY} as ci-bot"
    assert secret not in proc.stdout + proc.stderr
    stored = json.loads((docker_config / "config.json").read_text(encoding="utf-8"))
    assert REGISTRY in stored["auths"]
    actions = project.ci("images", "login", GITHUB_ACTIONS="true", env=env)
    _ok(actions)
    assert f"::add-mask::{secret}" in actions.stdout


# ----------------------------------------------------------------------------- reference app


def test_reference_app_images_build_and_push(
    docker: Any, local_registry: str, tmp_path: Path
) -> None:
    """The real Dockerfiles through the step, on the local base images (make base-images)."""
    bases = {
        name: f"local/{name}:bookworm" for name in ("maven", "jre", "node", "nginx", "pgclient")
    }
    missing = [
        r for r in bases.values() if docker.run("image", "inspect", r, check=False).returncode
    ]
    if missing:
        pytest.fail(f"local base images missing: {', '.join(missing)} (run `make base-images`)")
    base_images = bases
    namespace = f"it-app-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
        "CI_REGISTRY": REGISTRY,
        "CI_REGISTRY_NAMESPACE": namespace,
        "CI_REGISTRY_INSECURE": "true",
        "BASE_MAVEN": base_images["maven"],
        "BASE_JRE": base_images["jre"],
        "BASE_NODE": base_images["node"],
        "BASE_NGINX": base_images["nginx"],
        "BASE_PGCLIENT": base_images["pgclient"],
    }
    # The committed tree in its own repository: what a CI checkout builds, and safe from
    # edits made in the working tree while the test runs.
    app = tmp_path / "app"
    app.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(app)], input=archive, check=True)
    for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "app"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *git],
            cwd=app,
            check=True,
            capture_output=True,
        )
    out = tmp_path / "out"
    argv = [
        str(ROOT / ".venv" / "bin" / "ci"),
        "-c",
        str(app / "ci.yaml"),
        "-o",
        str(out),
        "images",
        "build",
        "--push",
        "--builder",
        "docker",
        "--only",
        "backend",
        "--only",
        "frontend",
    ]
    try:
        for _ in range(2):
            proc = subprocess.run(
                argv, cwd=app, env=env, capture_output=True, text=True, timeout=1800, check=False
            )
            _ok(proc)
        data = json.loads((out / "images.json").read_text(encoding="utf-8"))
        assert [i["status"] for i in data["images"]] == ["cached", "cached"]
        for image in data["images"]:
            repo = f"{namespace}/{image['name']}"
            served = tag_digests(REGISTRY, repo)
            assert all(served[t] == image["digest"] for t in image["tags"])
            cfg = image_config(REGISTRY, repo, image["content_tag"])["config"]
            assert cfg["User"].split(":")[0] not in ("", "0", "root")
            assert cfg["Labels"]["org.opencontainers.image.revision"] == data["git"]["sha"]
    finally:
        clean_namespace(REGISTRY, namespace)


def test_a_base_rebuilt_under_the_same_tag_rebuilds_the_images(
    project: Project, docker: Any, tmp_path: Path
) -> None:
    base = f"local/images-test-base:{project.namespace}"
    docker.run("tag", "local/debian:bookworm", base)
    try:
        project.env["TEST_BASE_IMAGE"] = base
        first = _build(project, "docker")
        assert {r["status"] for r in first.values()} == {"built"}
        assert {r["status"] for r in _build(project, "docker").values()} == {"cached"}
        # Same tag, different image: what a base rebuild (a security update) looks like.
        (tmp_path / "Dockerfile").write_text("FROM local/debian:bookworm\nRUN touch /patched\n")
        docker.run("build", "-q", "-t", base, str(tmp_path))
        again = _build(project, "docker")
        assert {n: r["status"] for n, r in again.items()} == {"api": "built", "web": "built"}
    finally:
        docker.run("rmi", "-f", base, check=False)
