"""What a reference points to now: the digest behind a tag, the identity of a base image.

Why: a content tag the registry already holds means the image needs no build, and a base image
rebuilt under the same tag -- a new upstream ``node:22`` on Docker Hub too -- must change the
input hash. Lookups ask the Docker daemon when one is up (its registry access, its ``docker
login`` credentials), else the registry API.
"""

from __future__ import annotations

from typing import Any

from docker.errors import APIError, DockerException, NotFound
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ci.errors import RegistryError
from ci.images.builders import Builder, DockerBuilder, docker_reason
from ci.registry import Client, RegistryUnreachable, split_reference


class Lookup:
    """Does the registry hold a tag, and at which digest?

    Through the Docker SDK (``images.get_registry_data``: the daemon's registry access and
    ``docker login`` credentials) when a daemon is there, else the registry API. Connection
    failures are retried with backoff before they become a ``RegistryError``.
    """

    def __init__(
        self, client: Any | None, registry: Client, retries: int = 3, backoff: float = 0.5
    ) -> None:
        self.client, self.registry = client, registry
        self.retries, self.backoff = retries, backoff

    def digest(self, repository: str, tag: str) -> str | None:
        if self.client is None:
            _, path, _ = split_reference(f"{repository}:{tag}")
            return self.registry.digest(path, tag)
        return self._sdk_digest(self.client, f"{repository}:{tag}")

    def _sdk_digest(self, client: Any, ref: str) -> str | None:
        try:
            return Retrying(
                stop=stop_after_attempt(self.retries + 1),
                wait=wait_exponential(multiplier=self.backoff),
                retry=retry_if_exception_type(_LookupFailed),
                reraise=True,
            )(_sdk_digest_once, client, ref)
        except _LookupFailed as exc:
            raise RegistryError(f"registry lookup of {ref} failed: {exc}") from None


class _LookupFailed(Exception):
    """The daemon could not ask the registry (not: the tag is missing); worth another try."""


def _sdk_digest_once(client: Any, ref: str) -> str | None:
    """The digest behind ``ref`` through the daemon, None when the registry has no such tag."""
    try:
        data = client.images.get_registry_data(ref)
    except NotFound:
        return None
    except APIError as exc:
        reason = docker_reason(exc)
        if "manifest unknown" in reason or "not found" in reason.lower():
            return None
        raise _LookupFailed(reason) from None
    return str(data.id)


#: The registry API host of Docker Hub, and the names people write for it in ``FROM``.
DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB})


def docker_hub_repository(ref: str) -> tuple[str, str] | None:
    """``(library/node, 22)`` for a Docker Hub reference (``node:22``, ``docker.io/node:22``,
    ``library/node``), None for any other registry."""
    host, path, tag = split_reference(ref)
    if host not in DOCKER_HUB_NAMES:
        return None
    return (path if "/" in path else f"library/{path}"), tag


def docker_hub_client() -> Client:
    """Docker Hub's registry API, anonymous: its 401 challenge names auth.docker.io, where
    ``Client`` fetches a pull token. Two retries (the client's policy), short timeouts: an
    offline machine should lose seconds here, not minutes."""
    return Client(DOCKER_HUB, retries=2, backoff=0.5, timeout=10)


class BaseResolver:
    """Resolve base references the way the builder will see them, for the input hash.

    The classic builder uses the daemon's local image (it never pulls here); BuildKit pulls
    from the registry, so a base's registry digest is what it builds on. On Docker Hub that is
    the digest behind the tag now, looked up anonymously: a new upstream ``node:22`` then
    changes the content tag, and the weekly rebuild picks it up. A lookup that fails leaves
    the name alone in the hash and becomes a warning (``warnings``), or, with ``require``
    (``build.require_base_digests``), an error. Other registries get one quick attempt, no
    warning: a local base a machine cannot reach just enters the hash by name, as before.
    """

    def __init__(
        self,
        builder: Builder,
        registry: Client,
        *,
        hub: Client | None = None,
        require: bool = False,
    ) -> None:
        self.builder, self.registry, self.require = builder, registry, require
        self.hub = hub or docker_hub_client()
        self._cache: dict[str, str | None] = {}
        #: Docker Hub references that did not resolve, with why; the first unreachable
        #: answer stops further attempts (one wait per run, not one per image).
        self._failed: dict[str, str] = {}
        self._unreachable: str | None = None

    def __call__(self, ref: str) -> str | None:
        if "@sha256:" in ref:
            return None  # already content-addressed
        if ref not in self._cache:
            self._cache[ref] = self._resolve(ref)
        return self._cache[ref]

    def _resolve(self, ref: str) -> str | None:
        if isinstance(self.builder, DockerBuilder):
            return _local_image_id(self.builder.client, ref)
        hub = docker_hub_repository(ref)
        if hub is None:
            return _registry_digest(ref, self.registry)
        return self._hub_digest(ref, *hub)

    def _hub_digest(self, ref: str, repo: str, tag: str) -> str | None:
        """HEAD the manifest (index) on Docker Hub: ``Docker-Content-Digest``, or a failure."""
        if self._unreachable is not None:
            return self._fail(ref, self._unreachable, RegistryUnreachable)
        try:
            digest = self.hub.digest(repo, tag)
        except RegistryUnreachable as exc:
            self._unreachable = exc.message
            return self._fail(ref, exc.message, RegistryUnreachable)
        except RegistryError as exc:
            return self._fail(ref, exc.message, RegistryError)
        if digest is None:
            return self._fail(ref, f"Docker Hub has no {repo}:{tag}", RegistryError)
        return digest

    def _fail(self, ref: str, reason: str, kind: type[RegistryError]) -> str | None:
        """No digest for ``ref``: an error when required, else remembered for the warning."""
        if self.require:
            raise kind(
                f"build.require_base_digests: the Docker Hub digest of base image {ref} "
                f"is needed, but the lookup failed: {reason}"
            )
        self._failed[ref] = reason
        return None

    @property
    def warnings(self) -> list[str]:
        """One line per reason: which bases enter the content tag by name only, and why."""
        by_reason: dict[str, list[str]] = {}
        for ref, reason in self._failed.items():
            by_reason.setdefault(reason, []).append(ref)
        return [
            f"base image digest not resolved on Docker Hub for {', '.join(refs)} ({reason}); "
            "hashed by name only, so a new upstream image does not change the content tag"
            for reason, refs in by_reason.items()
        ]


def base_resolver(
    builder: Builder, registry: Client, *, hub: Client | None = None, require: bool = False
) -> BaseResolver:
    """The resolver ``plan`` folds into each input hash (see ``BaseResolver``)."""
    return BaseResolver(builder, registry, hub=hub, require=require)


def _local_image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except DockerException:
        return None


def _registry_digest(ref: str, registry: Client) -> str | None:
    host, path, tag = split_reference(ref)
    same = host == registry.host
    client = Client(
        host,
        insecure=registry.insecure if same else False,
        username=registry.username if same else None,
        password=registry.password if same else None,
        retries=0,
        timeout=5,
    )
    try:
        return client.digest(path, tag)
    except RegistryError:
        return None
