"""Before a deploy: every digest must be signed by the environment's key or identity and carry
BuildKit's provenance naming the commit it was built from.

Why before Helm and all at once: a refused image must change nothing on the cluster, and the
operator wants the one line that says which image and why (unsigned, signed by someone else,
no provenance, a provenance that does not describe this image or this commit, attestations
other than the ones the build recorded). The signature is checked by the real ``cosign
verify``; the attestations are read from the image index through the registry API. The
signature covers the index, and the index names its attestation manifests by digest, so a
signed index with changed attestations cannot exist: a tampered provenance shows up either as
an unsigned digest or as a provenance that does not match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from ci import proc, tools
from ci.errors import CiError, RegistryError
from ci.images import attest
from ci.images.credentials import registry_client
from ci.images.sign import registry_flags, signature_digest
from ci.registry import Client, split_reference
from ci.release import ImageRef

if TYPE_CHECKING:
    from ci.config import Config, Verify


#: Images verified at once (each one is a few registry requests and one cosign run).
MAX_PARALLEL = 4


class VerificationFailed(CiError):
    """An image is not what the environment accepts; nothing was deployed (exit 1)."""


def verify_images(
    cfg: Config,
    env_name: str,
    images: Sequence[ImageRef],
    *,
    git_sha: str = "",
    env: Mapping[str, str] | None = None,
) -> list[ImageRef]:
    """Verify every image for ``env_name``; return them with signature and attestation digests.

    Without ``environments.NAME.verify`` the images are returned unchanged, except in an
    environment with approval (production), which must verify. Every image is checked; the
    first refusal is raised, saying how many others were refused too.
    """
    environment = cfg.environment(env_name)
    rules = environment.verify
    if rules is None and environment.approval:
        raise VerificationFailed(
            f"environment '{env_name}' needs approval, so its images must be verified: "
            f"set environments.{env_name}.verify (a public key, or identity and issuer)"
        )
    if rules is None:
        return list(images)
    env = os.environ if env is None else env
    registry = registry_client(cfg, env)

    def one(image: ImageRef) -> ImageRef | str:
        try:
            return verify_image(image, rules, registry, git_sha=git_sha, cfg=cfg)
        except VerificationFailed as exc:
            return exc.message

    # side by side: each image waits on the registry and on cosign, not on this process
    with ThreadPoolExecutor(max_workers=max(1, min(len(images), MAX_PARALLEL))) as pool:
        outcomes = list(pool.map(one, images))
    checked = [o for o in outcomes if isinstance(o, ImageRef)]
    refusals = [o for o in outcomes if isinstance(o, str)]
    if refusals:
        more = f" (and {len(refusals) - 1} more image(s) refused)" if len(refusals) > 1 else ""
        raise VerificationFailed(refusals[0] + more, detail="\n".join(refusals))
    return checked


def verify_image(
    image: ImageRef, rules: Verify, registry: Client, *, git_sha: str, cfg: Config
) -> ImageRef:
    """One image: signature, then provenance (and SBOM when required)."""
    host, repo, _ = split_reference(image.ref)
    client = registry if host == registry.host else Client(host, retries=1)

    def refuse(reason: str) -> VerificationFailed:
        return VerificationFailed(f"image {image.name} {image.ref}: refused: {reason}")

    try:
        signature = signature_digest(client, repo, image.digest)
        if not signature:
            raise refuse("not signed")
        reason = cosign_verify(image.ref, rules, insecure=cfg.registry.insecure)
        if reason:
            raise refuse(reason)
        # the SBOM's presence is checked, not its content, which can be megabytes
        found = attest.read(client, repo, image.digest, bodies=attest.PROVENANCE_TYPES)
    except RegistryError as exc:
        raise refuse(exc.message) from None
    reason = check_attestations(image, found, rules, git_sha)
    if reason:
        raise refuse(reason)
    return replace(image, signature=signature, attestations=tuple(found.digests()))


def verify_argv(ref: str, rules: Verify, *, insecure: bool = False) -> list[str]:
    """The ``cosign verify`` command line for one reference (pure but for finding cosign).

    A key signature is checked offline (key-mode signing uploads nothing to the transparency
    log); a keyless one needs the log and the certificate's identity and issuer.
    """
    host, _, _ = split_reference(ref)
    argv = [str(tools.require("cosign").path), "verify", *registry_flags(host, insecure)]
    if rules.key is not None:
        argv += ["--key", str(rules.key), "--insecure-ignore-tlog=true"]
    else:
        if rules.identity:
            argv += ["--certificate-identity", rules.identity]
        if rules.identity_regexp:
            argv += ["--certificate-identity-regexp", rules.identity_regexp]
        argv += ["--certificate-oidc-issuer", str(rules.issuer)]
    return [*argv, ref]


def cosign_verify(ref: str, rules: Verify, *, insecure: bool = False) -> str:
    """Run ``cosign verify``; the reason it refused, or "" when the signature is good."""
    argv = verify_argv(ref, rules, insecure=insecure)
    result = proc.run(argv, timeout=120, check=False, what="cosign verify")
    if result.ok:
        return ""
    who = (
        f"key {rules.key.name}"
        if rules.key
        else f"identity {rules.identity or rules.identity_regexp}"
    )
    return f"no signature by {who} ({_cosign_reason(result.stderr or result.stdout)})"


def _cosign_reason(output: str) -> str:
    """cosign's ``Error: ...`` line, shortened."""
    for line in reversed(output.splitlines()):
        if line.startswith("Error:"):
            text = line.removeprefix("Error:").strip()
            return re.sub(r"\s+", " ", text)[:200]
    return proc.tail(output, 1)[:200] or "cosign verify failed"


def check_attestations(
    image: ImageRef, found: attest.Attestations, rules: Verify, git_sha: str
) -> str:
    """Why the attestations are not acceptable, or "" when they are."""
    if rules.provenance and not found.of_type(attest.PROVENANCE_TYPES):
        return "no provenance attestation"
    if image.attestations and tuple(found.digests()) != tuple(image.attestations):
        return "attestations differ from the ones the build recorded"
    if rules.provenance:
        reason = _check_provenance(found, image.revision or git_sha)
        if reason:
            return reason
    if rules.sbom and not found.of_type(attest.SPDX_TYPE):
        return "no SBOM attestation"
    return ""


def _check_provenance(found: attest.Attestations, git_sha: str) -> str:
    statements = found.of_type(attest.PROVENANCE_TYPES)
    if not statements:
        return "no provenance attestation"
    covered = {image for image, _ in statements}
    missing = [image for image in found.manifests if image not in covered]
    if missing:
        return f"no provenance attestation for {missing[0]}"
    for image, statement in statements:
        if image not in statement.subjects:
            return f"provenance {statement.digest[:19]} does not describe {image[:19]}"
        revision = attest.provenance_revision(statement.predicate)
        if git_sha and revision and revision != git_sha:
            return f"provenance names commit {revision[:12]}, not {git_sha[:12]}"
    return ""
