"""The OCI registry HTTP API: manifest lookups, digests, manifest writes, with retries.

Why talk to the registry directly: adding a tag to an image that is already pushed is one
manifest GET and one PUT, with no layer moving anywhere -- that is what makes "nothing changed"
runs fast (``ci.images.publish`` adds tags that way, and undoes them).

Transient failures (connection refused, timeouts, 429 and 5xx answers) are retried with
exponential backoff by ``urllib3.util.Retry``, mounted on the client's requests session; what is
still failing after that becomes one ``RegistryError`` line naming the registry and the request.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse
from urllib3.util import Retry

from ci.errors import EnvironmentNotReady, RegistryError, first_line

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

#: Answers worth trying again: the registry is overloaded or restarting.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryUnreachable(EnvironmentNotReady, RegistryError):
    """No answer from the registry at all: the environment is not ready (exit 3), though
    callers that handle any ``RegistryError`` still catch it."""


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry stores it: the exact bytes matter, they define the digest."""

    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def split_reference(ref: str) -> tuple[str, str, str]:
    """``host/path/name:tag`` or ``...@sha256:...`` -> (host, repository path, tag or digest).

    A reference without a registry host (``debian:bookworm``) is on Docker Hub, whose API
    host and ``library/`` prefix differ from the name people write.
    """
    name, ref_part = ref, "latest"
    if "@" in name:
        name, ref_part = name.split("@", 1)
    else:
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, ref_part = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, ref_part
    path = name if "/" in name else f"library/{name}"
    return "registry-1.docker.io", path, ref_part


def is_loopback(host: str) -> bool:
    """Registries on this machine speak plain HTTP without any daemon configuration."""
    bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return bare in ("localhost", "::1") or bare.startswith("127.")


class _Retry(Retry):
    """urllib3's retry policy, waiting ``backoff_factor * 2**(n - 1)`` before the n-th retry.

    Two changes keep the schedule this client has always had: the first retry waits too
    (urllib3 retries at once), and ``Retry-After`` is not waited for (a long one would stall the
    run). The wait goes through ``pause``, so tests of the policy do not wait.
    """

    def __init__(self, *args: Any, pause: Callable[[float], None] = time.sleep, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pause = pause

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.pause = self.pause
        return retry

    def get_backoff_time(self) -> float:
        errors = len(self.history)  # requests follows redirects itself: all are errors
        return min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1)) if errors else 0.0

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.pause(backoff)


@dataclass
class Client:
    """A small registry API client for one registry host.

    ``sleep`` is injectable so tests of the retry policy do not wait.
    """

    host: str
    insecure: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        """Every request through the session is retried by urllib3 on this client's policy."""
        retry = _Retry(
            total=self.retries,
            backoff_factor=self.backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # every method: manifest PUTs and DELETEs are idempotent
            raise_on_status=False,  # the last answer is returned, to be quoted in the error
            pause=self.sleep,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    @property
    def base_url(self) -> str:
        scheme = "http" if self.insecure or is_loopback(self.host) else "https"
        return f"{scheme}://{self.host}"

    # ------------------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        scope: str = "",
        ok: tuple[int, ...] = (200,),
        missing_ok: bool = False,
    ) -> requests.Response | None:
        """Send one API request with retries, backoff and token auth.

        Returns None for a 404 when ``missing_ok``; raises ``RegistryError`` otherwise.
        """
        url = f"{self.base_url}/v2/{path}"
        try:
            resp = self._send(method, url, headers, data, scope)
        except requests.RequestException as exc:
            tries = f" (after {self.retries + 1} attempts)" if self.retries else ""
            raise RegistryUnreachable(
                f"registry {self.host} unreachable: {_reason(exc)}{tries}"
            ) from None
        if resp.status_code in ok:
            return resp
        if resp.status_code == 404 and missing_ok:
            return None
        raise RegistryError(
            f"registry refused {method} {self.host}/v2/{path}: "
            f"HTTP {resp.status_code} {_error_text(resp)}"
        )

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        data: bytes | None,
        scope: str,
    ) -> requests.Response:
        """One HTTP exchange; on a 401 challenge, authenticate once and repeat it."""
        hdrs = dict(headers or {})
        token = self._tokens.get(scope)
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        resp = self.session.request(
            method, url, headers=hdrs, data=data, timeout=self.timeout, allow_redirects=True
        )
        if resp.status_code != 401 or "Authorization" in hdrs:
            return resp
        challenge = resp.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("basic") and self.username:
            return self.session.request(
                method,
                url,
                headers=hdrs,
                data=data,
                timeout=self.timeout,
                auth=(self.username, self.password or ""),
            )
        if challenge.lower().startswith("bearer"):
            self._tokens[scope] = self._token(challenge, scope)
            hdrs["Authorization"] = f"Bearer {self._tokens[scope]}"
            return self.session.request(method, url, headers=hdrs, data=data, timeout=self.timeout)
        return resp

    def _token(self, challenge: str, scope: str) -> str:
        """Fetch a bearer token from the realm the registry named (GHCR, Docker Hub)."""
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(f"registry {self.host} sent an auth challenge without a realm")
        if scope:
            params["scope"] = scope
        auth = (self.username, self.password or "") if self.username else None
        resp = self.session.get(realm, params=params, auth=auth, timeout=self.timeout)
        if resp.status_code != 200:
            raise RegistryError(
                f"registry {self.host}: token request refused: HTTP {resp.status_code}"
                " (check the registry credentials)"
            )
        body = resp.json()
        return str(body.get("token") or body.get("access_token") or "")

    # ------------------------------------------------------------------------- API

    def _get_manifest(self, method: str, repo: str, ref: str) -> requests.Response | None:
        """A manifest request accepting every manifest type; None when the tag does not exist."""
        return self.request(
            method,
            f"{repo}/manifests/{ref}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            scope=f"repository:{repo}:pull",
            missing_ok=True,
        )

    def ping(self) -> None:
        """Raise ``RegistryError`` unless the registry answers its API root."""
        self.request("GET", "", ok=(200, 401))

    def digest(self, repo: str, ref: str) -> str | None:
        """The manifest digest a tag points to, or None when the tag does not exist."""
        resp = self._get_manifest("HEAD", repo, ref)
        if resp is None:
            return None
        found = resp.headers.get("Docker-Content-Digest")
        if found:
            return found
        manifest = self.manifest(repo, ref)
        return manifest.digest if manifest else None

    def manifest(self, repo: str, ref: str) -> Manifest | None:
        """The manifest (bytes and media type) of a tag or digest, or None when missing."""
        resp = self._get_manifest("GET", repo, ref)
        if resp is None:
            return None
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type:
            media_type = str(json.loads(resp.content).get("mediaType", DOCKER_MANIFEST))
        digest = resp.headers.get("Docker-Content-Digest") or _sha256(resp.content)
        return Manifest(digest=digest, media_type=media_type, body=resp.content)

    def put_manifest(self, repo: str, tag: str, manifest: Manifest) -> str:
        """Point ``tag`` at ``manifest``; return the digest the registry reports."""
        resp = self.request(
            "PUT",
            f"{repo}/manifests/{tag}",
            headers={"Content-Type": manifest.media_type},
            data=manifest.body,
            scope=f"repository:{repo}:pull,push",
            ok=(200, 201),
        )
        assert resp is not None
        return resp.headers.get("Docker-Content-Digest") or manifest.digest

    def blob(self, repo: str, digest: str) -> bytes:
        """The content of a blob (a config or an attestation statement)."""
        resp = self.request("GET", f"{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        assert resp is not None
        return resp.content

    def put_blob(self, repo: str, data: bytes) -> str:
        """Upload a small blob in one request (monolithic upload); return its digest."""
        digest = _sha256(data)
        scope = f"repository:{repo}:pull,push"
        resp = self.request("POST", f"{repo}/blobs/uploads/", scope=scope, ok=(202,))
        assert resp is not None
        location = resp.headers["Location"]
        sep = "&" if "?" in location else "?"
        url = location if location.startswith("http") else f"{self.base_url}{location}"
        self.request(
            "PUT",
            f"{url}{sep}digest={digest}".removeprefix(f"{self.base_url}/v2/"),
            headers={"Content-Type": "application/octet-stream"},
            data=data,
            scope=scope,
            ok=(201,),
        )
        return digest

    def tags(self, repo: str) -> list[str]:
        """Every tag of a repository (following the registry's pages); [] when it has none."""
        found: list[str] = []
        path: str | None = f"{repo}/tags/list?n=1000"
        while path:
            resp = self.request("GET", path, scope=f"repository:{repo}:pull", missing_ok=True)
            if resp is None:
                return found
            found += list(resp.json().get("tags") or [])
            link = resp.links.get("next", {}).get("url", "")
            path = link.removeprefix("/v2/") if link else None
        return found

    def delete(self, repo: str, digest: str) -> bool:
        """Delete a manifest by digest; False when the registry does not allow deletes."""
        resp = self.request(
            "DELETE",
            f"{repo}/manifests/{digest}",
            scope=f"repository:{repo}:delete",
            ok=(200, 202),
            missing_ok=True,
        )
        return resp is not None


def pick_platform(index: dict[str, Any], platform: str) -> str | None:
    """The digest of the index entry for ``os/arch[/variant]``, skipping attestations."""
    want = platform.split("/")
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        have = [plat.get("os", ""), plat.get("architecture", "")]
        if len(want) > 2:
            have.append(plat.get("variant", ""))
        if have == want:
            return str(entry["digest"])
    return None


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause of a connection failure, short enough for one line."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "Temporary failure in name resolution",
        "No route to host",
    ):
        if marker.lower() in text.lower():
            return marker.lower()
    return first_line(exc, 160)


def _error_text(resp: requests.Response) -> str:
    """The registry's own error code and message, when it sent the standard error body."""
    try:
        errors = resp.json().get("errors") or []
    except ValueError:
        return resp.reason or ""
    if errors:
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    return resp.reason or ""
