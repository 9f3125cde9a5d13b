"""What a reference points to now: the digest behind a tag, the identity of a base image.

Why: a content tag the registry already holds means the image needs no build, and a base image
rebuilt under the same tag must change the input hash. Lookups ask the Docker daemon when one
is up (its registry access, its ``docker login`` credentials), else the registry API.
"""

from __future__ import annotations

from typing import Any

from docker.errors import APIError, DockerException, NotFound
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ci.errors import RegistryError
from ci.images.builders import Builder, DockerBuilder, docker_reason
from ci.images.plan import Resolver
from ci.registry import Client, split_reference


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


def base_resolver(builder: Builder, registry: Client) -> Resolver:
    """Resolve base references the way the builder will: the classic builder uses the daemon's
    local image (it never pulls here), BuildKit pulls from the registry.

    One quick attempt each, no retries: an unresolvable reference (an upstream image on a
    machine without that registry) just enters the hash by name.
    """
    cache: dict[str, str | None] = {}

    def resolve(ref: str) -> str | None:
        if "@sha256:" in ref:
            return None  # already content-addressed
        if ref not in cache:
            if isinstance(builder, DockerBuilder):
                cache[ref] = _local_image_id(builder.client, ref)
            else:
                cache[ref] = _registry_digest(ref, registry)
        return cache[ref]

    return resolve


def _local_image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except DockerException:
        return None


def _registry_digest(ref: str, registry: Client) -> str | None:
    host, path, tag = split_reference(ref)
    if host == "registry-1.docker.io":
        return None  # upstream: not reachable from every machine; the name is enough
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
