"""Unit tests of the supply-chain parts of the images step: attestation options and reading,
verification rules, the retention rule, signing command lines and the failed-run record."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ci import config, registry, tools
from ci.errors import ConfigError, RegistryError, exit_code
from ci.images import attest, gitinfo, prune, results, sign, verify
from ci.release import ImageRef

DATA = Path(__file__).resolve().parents[1] / "data" / "images"
SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE = "sha256:" + "1" * 64
INDEX = "sha256:" + "2" * 64
ATT = "sha256:" + "3" * 64


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    dest = tmp_path / "project"
    shutil.copytree(DATA, dest)
    return config.load(dest / "ci.yaml")


def _registry(cfg: config.Config, **changes: Any) -> config.Registry:
    return dataclasses.replace(cfg.registry, **changes)


# ----------------------------------------------------------------------------- buildx options


def test_pushed_builds_get_max_provenance_and_the_configured_generator(
    cfg: config.Config,
) -> None:
    reg = _registry(cfg, sbom=True)
    assert attest.buildx_args(reg, push=True, sbom_generator="r/scanner:1") == [
        "--provenance=mode=max",
        "--sbom=generator=r/scanner:1",
    ]


def test_provenance_off_and_no_sbom(cfg: config.Config) -> None:
    reg = _registry(cfg, provenance="none", sbom=False)
    assert attest.buildx_args(reg, push=True, sbom_generator="x") == [
        "--provenance=false",
        "--sbom=false",
    ]


def test_local_builds_carry_no_attestations(cfg: config.Config) -> None:
    assert attest.buildx_args(cfg.registry, push=False, sbom_generator="x") == [
        "--provenance=false",
        "--sbom=false",
    ]


# ----------------------------------------------------------------------------- reading back


def _statement(kind: str, subject: str, predicate: dict[str, Any]) -> attest.Statement:
    return attest.Statement(kind, "sha256:" + "9" * 64, [subject], predicate)


def _provenance(revision: str = SHA, subject: str = IMAGE) -> attest.Attestations:
    meta = {"https://mobyproject.org/buildkit@v1#metadata": {"vcs": {"revision": revision}}}
    found = attest.Attestations()
    found.manifests[IMAGE] = ATT
    found.statements[IMAGE] = [
        _statement(attest.PROVENANCE_TYPES[0], subject, {"metadata": meta}),
    ]
    return found


def test_provenance_revision_from_vcs_metadata_or_the_vcs_ref_build_arg() -> None:
    assert attest.provenance_revision(_provenance().statements[IMAGE][0].predicate) == SHA
    v02 = {"invocation": {"parameters": {"args": {"build-arg:VCS_REF": "abc"}}}}
    assert attest.provenance_revision(v02) == "abc"
    v1: dict[str, Any] = {"buildDefinition": {"externalParameters": {"request": {"args": {}}}}}
    assert attest.provenance_revision(v1) == ""


class _FakeRegistry:
    """Serves manifests and blobs from dicts, as the registry API would."""

    host = "127.0.0.1:5000"

    def __init__(self, manifests: dict[str, dict[str, Any]], blobs: dict[str, Any]) -> None:
        self.manifests, self.blobs = manifests, blobs

    def manifest(self, _repo: str, ref: str) -> registry.Manifest | None:
        data = self.manifests.get(ref)
        if data is None:
            return None
        return registry.Manifest(ref, data["mediaType"], json.dumps(data).encode())

    def blob(self, _repo: str, digest: str) -> bytes:
        return json.dumps(self.blobs[digest]).encode()


def test_read_finds_the_attestation_manifest_of_each_platform_image() -> None:
    layer = "sha256:" + "4" * 64
    fake = _FakeRegistry(
        {
            INDEX: {
                "mediaType": registry.OCI_INDEX,
                "manifests": [
                    {"digest": IMAGE, "platform": {"os": "linux", "architecture": "amd64"}},
                    {
                        "digest": ATT,
                        "annotations": {
                            "vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": IMAGE,
                        },
                    },
                ],
            },
            ATT: {
                "mediaType": registry.OCI_MANIFEST,
                "layers": [
                    {
                        "digest": layer,
                        "annotations": {"in-toto.io/predicate-type": attest.SPDX_TYPE},
                    }
                ],
            },
        },
        {layer: {"predicateType": attest.SPDX_TYPE, "subject": [{"digest": {"sha256": "1" * 64}}]}},
    )
    found = attest.read(fake, "repo", INDEX)  # type: ignore[arg-type]
    assert found.digests() == [ATT]
    [(image, statement)] = found.of_type(attest.SPDX_TYPE)
    assert (image, statement.subjects) == (IMAGE, [IMAGE])
    shallow = attest.read(fake, "repo", INDEX, bodies=())  # type: ignore[arg-type]
    assert [s.predicate_type for s in shallow.statements[IMAGE]] == [attest.SPDX_TYPE]


# ----------------------------------------------------------------------------- verification

RULES = config.Verify(key=Path("cosign.pub"))
REF = ImageRef("api", "127.0.0.1:5000/t/api", INDEX, "api")


def test_matching_provenance_is_accepted() -> None:
    assert verify.check_attestations(REF, _provenance(), RULES, SHA) == ""


def test_missing_provenance_is_refused() -> None:
    assert verify.check_attestations(REF, attest.Attestations(), RULES, SHA) == (
        "no provenance attestation"
    )


def test_provenance_of_another_commit_is_refused() -> None:
    reason = verify.check_attestations(REF, _provenance(revision="f" * 40), RULES, SHA)
    assert reason == f"provenance names commit {'f' * 12}, not {SHA[:12]}"


def test_provenance_describing_another_image_is_refused() -> None:
    other = "sha256:" + "8" * 64
    reason = verify.check_attestations(REF, _provenance(subject=other), RULES, SHA)
    assert reason.startswith("provenance sha256:")
    assert "does not describe" in reason


def test_attestations_other_than_the_recorded_ones_are_refused() -> None:
    recorded = dataclasses.replace(REF, attestations=("sha256:" + "7" * 64,))
    reason = verify.check_attestations(recorded, _provenance(), RULES, SHA)
    assert reason == "attestations differ from the ones the build recorded"


def test_a_reused_image_is_checked_against_the_commit_that_built_it() -> None:
    older = dataclasses.replace(REF, revision=SHA)
    assert verify.check_attestations(older, _provenance(), RULES, "e" * 40) == ""
    forged = dataclasses.replace(REF, revision="e" * 40)
    reason = verify.check_attestations(forged, _provenance(), RULES, SHA)
    assert reason == f"provenance names commit {SHA[:12]}, not {'e' * 12}"


def test_sbom_required_but_absent_is_refused() -> None:
    rules = dataclasses.replace(RULES, sbom=True)
    assert verify.check_attestations(REF, _provenance(), rules, SHA) == "no SBOM attestation"


def test_cosign_reason_is_its_error_line() -> None:
    out = "Verification failed\nError: no matching signatures: invalid signature\nmain.go:74"
    assert verify._cosign_reason(out) == "no matching signatures: invalid signature"


def test_an_environment_without_verify_passes_images_through(cfg: config.Config) -> None:
    assert verify.verify_images(cfg, "test", [REF]) == [REF]


def test_verify_and_signing_settings_load(tmp_path: Path) -> None:
    shutil.copytree(DATA, tmp_path / "p")
    path = tmp_path / "p" / "ci.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "  insecure: true\n",
        "  insecure: true\n  signing: {mode: key, key: keys/cosign.key}\n"
        "  retention: {keep_per_branch: 2}\n",
    )
    text = text.replace(
        "    namespace: images-test\n",
        "    namespace: images-test\n    verify: {key: keys/cosign.pub}\n",
    )
    path.write_text(text, encoding="utf-8")
    loaded = config.load(path)
    assert loaded.registry.signing.mode == "key"
    assert loaded.registry.signing.key == (tmp_path / "p" / "keys" / "cosign.key").resolve()
    assert loaded.registry.retention == config.Retention(keep_per_branch=2, keep_days=14)
    rules = loaded.environments["test"].verify
    assert rules is not None
    assert rules.provenance
    assert not rules.sbom


def test_keyless_verify_needs_an_issuer(tmp_path: Path) -> None:
    shutil.copytree(DATA, tmp_path / "p")
    path = tmp_path / "p" / "ci.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "    namespace: images-test\n",
        "    namespace: images-test\n    verify: {identity: https://github.com/o/r}\n",
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        config.load(path)


# ----------------------------------------------------------------------------- signing


def test_key_from_a_secret_signs_without_the_transparency_log(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "require", lambda _n: type("T", (), {"path": "cosign"}))
    reg = _registry(cfg, signing=config.Signing(mode="key"))
    signer = sign.Signer.from_config(reg, {"COSIGN_PRIVATE_KEY": "KEY", "COSIGN_PASSWORD": "pw"})
    assert signer is not None
    argv, env = signer.argv("127.0.0.1:5000/t/api@" + INDEX)
    assert argv == [
        "cosign",
        "sign",
        "--yes",
        "--allow-insecure-registry",
        "--allow-http-registry",
        "--key",
        "env://COSIGN_PRIVATE_KEY",
        "--tlog-upload=false",
        "127.0.0.1:5000/t/api@" + INDEX,
    ]
    assert env == {"COSIGN_PASSWORD": "pw", "COSIGN_PRIVATE_KEY": "KEY"}


def test_keyless_signing_passes_no_key(cfg: config.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "require", lambda _n: type("T", (), {"path": "cosign"}))
    reg = dataclasses.replace(
        _registry(cfg, signing=config.Signing(mode="keyless")), host="ghcr.io", insecure=False
    )
    signer = sign.Signer.from_config(reg, {})
    assert signer is not None
    assert signer.argv("ghcr.io/o/api@" + INDEX) == (
        ["cosign", "sign", "--yes", "ghcr.io/o/api@" + INDEX],
        {},
    )


def test_signing_off_has_no_signer(cfg: config.Config) -> None:
    assert sign.Signer.from_config(cfg.registry, {}) is None


def test_key_mode_without_key_or_secret_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="COSIGN_PRIVATE_KEY"):
        sign.ensure_key(config.Signing(mode="key"))


def test_signature_tag_is_cosigns() -> None:
    assert sign.signature_tag(INDEX) == f"sha256-{'2' * 64}.sig"


# ----------------------------------------------------------------------------- retention

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _stored(n: int, days_old: int, branch: str = "main") -> prune.Stored:
    return prune.Stored(
        "t/api", f"sha256:{n:064d}", [f"t{n}"], branch, NOW - dt.timedelta(days=days_old)
    )


def test_retention_keeps_released_newest_per_branch_and_young_images() -> None:
    stored = [
        _stored(1, 40),  # old, released -> kept
        _stored(2, 30),  # old, not newest on main -> deleted
        _stored(3, 20),  # newest two on main -> kept
        _stored(4, 25),
        _stored(5, 50, "feature"),  # newest on feature -> kept
        _stored(6, 60, "feature"),  # old, second on feature -> deleted
        _stored(7, 3, "feature"),  # young -> kept
    ]
    rule = config.Retention(keep_per_branch=2, keep_days=7)
    doomed = prune.select(stored, {stored[0].digest}, rule, NOW)
    assert [d.digest for d in doomed] == [stored[5].digest, stored[1].digest]


def test_released_digests_read_release_records_and_images_json(tmp_path: Path) -> None:
    (tmp_path / "release.json").write_text(
        json.dumps({"images": {"api": {"digest": INDEX}}}), encoding="utf-8"
    )
    (tmp_path / "images.json").write_text(
        json.dumps({"images": [{"name": "api", "digest": IMAGE}]}), encoding="utf-8"
    )
    found = prune.released_digests([*prune.default_records(tmp_path), tmp_path / "none.json"])
    assert found == {INDEX, IMAGE}


# ----------------------------------------------------------------------------- publishing failures


def test_a_failed_run_keeps_the_last_good_record(tmp_path: Path) -> None:
    git = gitinfo.GitInfo(sha=SHA, branch="main")
    good = results.ImagesResult("buildx", True, git, [])
    results.write_result(good, tmp_path)
    before = (tmp_path / "images.json").read_text(encoding="utf-8")
    failed = results.ImagesResult("buildx", True, git, [])
    failed.errors = [registry.RegistryUnreachable("registry 127.0.0.1:1 unreachable")]
    assert results.write_result(failed, tmp_path) == tmp_path / "images.failed.json"
    assert (tmp_path / "images.json").read_text(encoding="utf-8") == before
    results.write_result(good, tmp_path)
    assert not (tmp_path / "images.failed.json").exists()


def test_an_unreachable_registry_is_an_environment_not_ready() -> None:
    client = registry.Client("127.0.0.1:9", retries=0, timeout=2)
    with pytest.raises(RegistryError) as caught:
        client.ping()
    assert isinstance(caught.value, registry.RegistryUnreachable)
    assert exit_code(caught.value) == 3


def test_an_environment_with_approval_must_verify(cfg: config.Config) -> None:
    env = dataclasses.replace(cfg.environments["test"], approval=True)
    strict = dataclasses.replace(cfg, environments={"test": env})
    with pytest.raises(verify.VerificationFailed, match="needs approval") as caught:
        verify.verify_images(strict, "test", [REF])
    assert exit_code(caught.value) == 1


def test_keyless_verification_names_identity_and_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "require", lambda _n: type("T", (), {"path": "cosign"}))
    rules = config.Verify(
        identity_regexp="^https://github.com/o/r/",
        issuer="https://token.actions.githubusercontent.com",
    )
    assert verify.verify_argv("ghcr.io/o/api@" + INDEX, rules) == [
        "cosign",
        "verify",
        "--certificate-identity-regexp",
        "^https://github.com/o/r/",
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        "ghcr.io/o/api@" + INDEX,
    ]
    keyed = verify.verify_argv("127.0.0.1:5000/t/api@" + INDEX, RULES)
    assert keyed[2:] == [
        "--allow-insecure-registry",
        "--allow-http-registry",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
        "127.0.0.1:5000/t/api@" + INDEX,
    ]


def test_images_are_verified_side_by_side_in_order_and_every_refusal_is_counted(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dataclasses.replace(cfg.environments["test"], verify=RULES)
    checked = dataclasses.replace(cfg, environments={"test": env})
    refs = [dataclasses.replace(REF, name=f"img{i}") for i in range(6)]

    def fake(image: ImageRef, *_a: object, **_k: object) -> ImageRef:
        if image.name in {"img1", "img4"}:
            raise verify.VerificationFailed(f"{image.name}: no provenance attestation")
        return dataclasses.replace(image, attestations=("sha256:" + "1" * 64,))

    monkeypatch.setattr(verify, "verify_image", fake)
    with pytest.raises(verify.VerificationFailed) as caught:
        verify.verify_images(checked, "test", refs, env={})
    assert caught.value.message == "img1: no provenance attestation (and 1 more image(s) refused)"
    refs = [r for r in refs if r.name not in {"img1", "img4"}]
    got = verify.verify_images(checked, "test", refs, env={})
    assert [r.name for r in got] == ["img0", "img2", "img3", "img5"]
    assert all(r.attestations for r in got)
