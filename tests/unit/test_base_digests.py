"""Docker Hub base image digests in the content hash, against a fake Docker Hub.

The fake (``fake_docker_hub``) answers like registry-1.docker.io and auth.docker.io: a 401
challenge, an anonymous pull token, ``Docker-Content-Digest`` on a manifest HEAD. The lookup
itself is ``ci.registry.Client``, pointed at the fake's address instead of Docker Hub's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import config
from ci.images import builders, gitinfo, lookup, plan
from ci.registry import DOCKER_LIST, OCI_INDEX, Client, RegistryUnreachable
from tests.unit import fake_docker_hub
from tests.unit.fake_docker_hub import FakeDockerHub

DATA = Path(__file__).resolve().parents[1] / "data" / "images"
GIT = gitinfo.GitInfo(sha="0123456789abcdef0123456789abcdef01234567", branch="main")
NODE_DIGEST = "sha256:" + "a" * 64
NEWER_DIGEST = "sha256:" + "b" * 64


@pytest.fixture
def hub() -> Iterator[FakeDockerHub]:
    with fake_docker_hub.serve() as fake:
        yield fake


def _hub_client(fake: FakeDockerHub, retries: int = 0) -> Client:
    return Client(fake.registry_host, retries=retries, backoff=0, sleep=lambda _s: None)


def _buildkit() -> builders.BuildxBuilder:
    return builders.BuildxBuilder(Path("/opt/buildx"), metadata_dir=Path("/out"))


def _resolver(fake: FakeDockerHub, **kwargs: object) -> lookup.BaseResolver:
    return lookup.base_resolver(
        _buildkit(),
        Client("127.0.0.1:5000"),
        hub=_hub_client(fake),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def node_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.Config:
    """The two-image test project built on ``node:22`` from Docker Hub."""
    dest = tmp_path / "project"
    shutil.copytree(DATA, dest)
    monkeypatch.setenv("TEST_BASE_IMAGE", "node:22")
    return config.load(dest / "ci.yaml")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("node:22", ("library/node", "22")),
        ("node", ("library/node", "latest")),
        ("library/node:22", ("library/node", "22")),
        ("docker.io/node:22", ("library/node", "22")),
        ("docker.io/library/node:22-slim", ("library/node", "22-slim")),
        ("index.docker.io/bitnami/redis:7.4", ("bitnami/redis", "7.4")),
        ("eclipse-temurin/jre:21", ("eclipse-temurin/jre", "21")),
        ("ghcr.io/owner/node:22", None),
        ("127.0.0.1:5000/base/node:22", None),
        ("localhost/node:22", None),
    ],
)
def test_docker_hub_references_are_recognised_short_names_and_all(
    ref: str, expected: tuple[str, str] | None
) -> None:
    assert lookup.docker_hub_repository(ref) == expected


def test_a_docker_hub_base_resolves_to_its_index_digest_with_an_anonymous_token(
    hub: FakeDockerHub,
) -> None:
    hub.manifests[("library/node", "22")] = NODE_DIGEST
    resolve = _resolver(hub)
    assert resolve("node:22") == NODE_DIGEST
    assert resolve.warnings == []
    (token,) = hub.requests("auth")
    assert token.query == {
        "service": ["registry.docker.io"],
        "scope": ["repository:library/node:pull"],
    }
    assert "Authorization" not in token.headers  # anonymous
    asked = hub.requests("registry")
    assert [(s.method, s.path) for s in asked] == [("HEAD", "/v2/library/node/manifests/22")] * 2
    assert asked[-1].headers["Authorization"] == "Bearer anon.repository.library.node.pull"
    accept = asked[-1].headers["Accept"]
    assert DOCKER_LIST in accept
    assert OCI_INDEX in accept


def test_each_reference_is_looked_up_once_and_pinned_ones_never(hub: FakeDockerHub) -> None:
    hub.manifests[("library/node", "22")] = NODE_DIGEST
    resolve = _resolver(hub)
    assert [resolve("node:22") for _ in range(3)] == [NODE_DIGEST] * 3
    assert resolve(f"node:22@{NEWER_DIGEST}") is None  # content-addressed: the name says it all
    assert len(hub.requests("registry")) == 2  # one challenge, one answer


def test_a_new_upstream_base_changes_the_content_tag(
    hub: FakeDockerHub, node_cfg: config.Config
) -> None:
    hub.manifests[("library/node", "22")] = NODE_DIGEST
    before = [j.content_tag for j in plan.plan(node_cfg, GIT, resolve=_resolver(hub))]
    again = [j.content_tag for j in plan.plan(node_cfg, GIT, resolve=_resolver(hub))]
    hub.manifests[("library/node", "22")] = NEWER_DIGEST
    after = [j.content_tag for j in plan.plan(node_cfg, GIT, resolve=_resolver(hub))]
    assert before == again
    assert all(b != a for b, a in zip(before, after, strict=True))


def test_an_unreachable_docker_hub_is_one_warning_and_the_name_alone_is_hashed(
    node_cfg: config.Config,
) -> None:
    with fake_docker_hub.serve() as gone:
        closed = gone.registry_host  # the fake stops at the end of the block: nothing listens
    resolve = lookup.base_resolver(
        _buildkit(), Client("127.0.0.1:5000"), hub=Client(closed, retries=0)
    )
    jobs = plan.plan(node_cfg, GIT, resolve=resolve)
    assert resolve("other:1") is None  # not tried: Docker Hub did not answer this run
    (warning,) = resolve.warnings
    assert warning.startswith("base image digest not resolved on Docker Hub for node:22, other:1")
    assert f"registry {closed} unreachable" in warning
    assert "hashed by name only" in warning
    by_name = plan.plan(node_cfg, GIT, resolve=lambda _ref: None)
    assert [j.content_tag for j in jobs] == [j.content_tag for j in by_name]


def test_a_tag_docker_hub_does_not_have_is_a_warning(hub: FakeDockerHub) -> None:
    resolve = _resolver(hub)
    assert resolve("node:99") is None
    assert resolve.warnings == [
        "base image digest not resolved on Docker Hub for node:99 (Docker Hub has no "
        "library/node:99); hashed by name only, so a new upstream image does not change the "
        "content tag"
    ]


def test_require_base_digests_turns_a_failed_lookup_into_an_error_naming_the_key() -> None:
    with fake_docker_hub.serve() as gone:
        closed = gone.registry_host
    resolve = lookup.base_resolver(
        _buildkit(), Client("127.0.0.1:5000"), hub=Client(closed, retries=0), require=True
    )
    with pytest.raises(RegistryUnreachable, match=r"^build.require_base_digests: .* node:22 "):
        resolve("node:22")


def test_a_busy_docker_hub_is_asked_again_by_the_registry_retry_policy(
    hub: FakeDockerHub,
) -> None:
    hub.manifests[("library/node", "22")] = NODE_DIGEST
    hub.fail = [503, 503]
    resolve = lookup.base_resolver(
        _buildkit(), Client("127.0.0.1:5000"), hub=_hub_client(hub, retries=2)
    )
    assert resolve("node:22") == NODE_DIGEST
    assert resolve.warnings == []


def test_other_registries_and_the_classic_builder_never_ask_docker_hub(
    hub: FakeDockerHub,
) -> None:
    with fake_docker_hub.serve() as gone:
        closed = gone.registry_host
    resolve = _resolver(hub)
    assert resolve(f"{closed}/base/node:22") is None  # one quick attempt, as before
    assert resolve.warnings == []

    class Images:
        def get(self, ref: str) -> object:
            return type("Image", (), {"id": f"sha256:local-{ref}"})()

    class Daemon:
        images = Images()

        def version(self) -> dict[str, str]:
            return {"Os": "linux", "Arch": "amd64"}

    classic = lookup.base_resolver(
        builders.DockerBuilder(Daemon()), Client("127.0.0.1:5000"), hub=_hub_client(hub)
    )
    assert classic("node:22") == "sha256:local-node:22"  # what the classic build uses
    assert hub.seen == []
