"""cosign signatures on pushed digests: with a key (a secret, or a file made on first use) or
keyless (the workflow's OIDC token), skipped when the digest already carries one.

Why cosign: it is what sigstore made routine and what admission controllers check; its
signatures live in the registry beside the image (the ``sha256-<hex>.sig`` tag), so a deploy
anywhere can verify them. Why skip a signed digest: an unchanged image keeps its digest, and
the no-change path must stay one registry request per image. A key-mode signature does not go
to the public transparency log (nothing outside this machine is reachable locally, and a key
signature is checked against its public key); keyless signatures must, that is how they verify.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ci import gha, proc, tools
from ci.errors import ConfigError, RegistryError
from ci.registry import Client, is_loopback, split_reference

if TYPE_CHECKING:
    from ci.config import Registry, Signing


def signature_tag(digest: str) -> str:
    """The tag cosign stores a digest's signatures under."""
    return digest.replace(":", "-") + ".sig"


def signature_digest(registry: Client, repo: str, digest: str) -> str | None:
    """The digest of the signature manifest of ``repo@digest``, None when it is unsigned."""
    return registry.digest(repo, signature_tag(digest))


def registry_flags(host: str, insecure: bool) -> list[str]:
    """cosign talks plain HTTP to local registries only when told to."""
    if insecure or is_loopback(host):
        return ["--allow-insecure-registry", "--allow-http-registry"]
    return []


@dataclass(frozen=True)
class Signer:
    """Signs pushed digests the way the configuration says."""

    signing: Signing
    host: str
    insecure: bool
    env: Mapping[str, str]

    @classmethod
    def from_config(cls, reg: Registry, env: Mapping[str, str] | None = None) -> Signer | None:
        """A signer, or None when nothing is to be signed (mode none)."""
        if reg.signing.mode == "none":
            return None
        return cls(reg.signing, reg.host, reg.insecure, os.environ if env is None else env)

    def sign(self, registry: Client, repository: str, digest: str) -> tuple[str, bool]:
        """Sign ``repository@digest`` unless signed already; (signature digest, signed now)."""
        _, repo, _ = split_reference(f"{repository}@{digest}")
        existing = signature_digest(registry, repo, digest)
        if existing:
            return existing, False
        argv, env = self.argv(f"{repository}@{digest}")
        result = proc.run(argv, env=env, timeout=300, check=False, what="cosign sign")
        if not result.ok:
            reason = proc.tail(result.stderr or result.stdout, 1)
            raise RegistryError(f"cosign sign {repository}@{digest} failed: {reason}")
        signed = signature_digest(registry, repo, digest)
        if not signed:
            raise RegistryError(f"cosign signed {repository}@{digest} but no signature is there")
        return signed, True

    def argv(self, ref: str) -> tuple[list[str], dict[str, str]]:
        """The ``cosign sign`` command line and the variables it needs (pure but for the key)."""
        argv = [str(tools.require("cosign").path), "sign", "--yes"]
        argv += registry_flags(self.host, self.insecure)
        env: dict[str, str] = {}
        if self.signing.mode == "keyless":
            return [*argv, ref], env
        password = self.env.get(self.signing.password_env, "")
        env["COSIGN_PASSWORD"] = password
        if self.env.get(self.signing.key_env):
            gha.mask(self.env[self.signing.key_env])
            env[self.signing.key_env] = self.env[self.signing.key_env]
            key = f"env://{self.signing.key_env}"
        else:
            key = str(ensure_key(self.signing, password))
        return [*argv, "--key", key, "--tlog-upload=false", ref], env


_KEY_LOCK = threading.Lock()


def ensure_key(signing: Signing, password: str = "") -> Path:
    """The private key file, generated with its ``.pub`` beside it on first use.

    Images are signed in parallel: one lock makes sure only the first generates the key.
    """
    with _KEY_LOCK:
        return _ensure_key(signing, password)


def _ensure_key(signing: Signing, password: str) -> Path:
    if signing.key is None:
        raise ConfigError(
            f"registry.signing: mode key needs ${signing.key_env} (the key's content) "
            "or registry.signing.key (a key file)"
        )
    if signing.key.is_file():
        return signing.key
    if signing.key.suffix != ".key":
        raise ConfigError(f"registry.signing.key: {signing.key} must end in .key to be generated")
    generate_key_pair(signing.key.parent / signing.key.stem, password)
    return signing.key


def generate_key_pair(prefix: Path, password: str = "") -> tuple[Path, Path]:
    """``cosign generate-key-pair``: PREFIX.key (private, mode 600) and PREFIX.pub."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    proc.run(
        (
            str(tools.require("cosign").path),
            "generate-key-pair",
            "--output-key-prefix",
            str(prefix),
        ),
        env={"COSIGN_PASSWORD": password},
        cwd=prefix.parent,
        timeout=60,
        what="cosign generate-key-pair",
    )
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    private.chmod(0o600)
    return private, public
