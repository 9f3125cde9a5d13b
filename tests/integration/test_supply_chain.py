"""Provenance, SBOM and signatures against the local registry, with the real BuildKit, syft and
cosign; deploy's verification refusing what ``ci`` did not build and sign; ``ci images prune``.

Deploy is checked up to the point where Helm would run: verification comes first, so a refused
image fails with exit 1 and one line, and an accepted one goes on to the cluster, which these
tests do not have (exit 3, "not ready") -- either way no release is written.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ci import registry, tools
from ci.images import attest
from tests.integration.fixtures_images import (
    REGISTRY,
    Project,
    debian_base_fixture,  # noqa: F401 - a fixture, used by name
    project_fixture,  # noqa: F401 - a fixture, used by name
    tag_digests,
)

pytestmark = pytest.mark.integration

GENERATOR = f"{REGISTRY}/ci/sbom-generator:syft-v1.57.1"
BASE = f"{REGISTRY}/base/debian:bookworm"


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def _cosign() -> str:
    return str(tools.require("cosign").path)


def _supply_config(project: Project, *, sbom: bool = True) -> None:
    """Sign with a key made on first use, attach SBOMs, verify the test environment."""
    path = project.root / "ci.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "  insecure: true\n",
        "  insecure: true\n"
        f"  sbom: {'true' if sbom else 'false'}\n"
        f"  sbom_generator: {GENERATOR}\n"
        f"  sbom_generator_base: {BASE}\n"
        "  signing: {mode: key, key: keys/cosign.key}\n"
        "  retention: {keep_per_branch: 1, keep_days: 7}\n",
    )
    text = text.replace(
        "    namespace: images-test\n",
        "    namespace: images-test\n    verify: {key: keys/cosign.pub, sbom: "
        f"{'true' if sbom else 'false'}}}\n",
    )
    path.write_text(text, encoding="utf-8")
    (project.root / ".gitignore").write_text("keys/\n", encoding="utf-8")
    project.commit("sign and attest")
    project.env["TEST_BASE_IMAGE"] = BASE


def _push(project: Project) -> dict[str, dict[str, Any]]:
    _ok(project.ci("images", "build", "--push", "--builder", "buildx"))
    return project.results()


FLAGS = ("--allow-insecure-registry", "--allow-http-registry")


def _cosign_run(*args: str, home: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    """The real cosign, with an empty key password and its own home folder."""
    env = {"COSIGN_PASSWORD": "", "PATH": "/usr/bin:/bin", "HOME": str(home)}
    return subprocess.run(
        [_cosign(), *args], env=env, capture_output=True, text=True, timeout=120, check=check
    )


def _cosign_verify(ref: str, key: Path) -> subprocess.CompletedProcess[str]:
    return _cosign_run(
        "verify", "--key", str(key), "--insecure-ignore-tlog=true", *FLAGS, ref, home=key.parent
    )


def _sign_with(key: Path, ref: str) -> None:
    _cosign_run(
        "sign",
        "--yes",
        "--key",
        str(key),
        "--tlog-upload=false",
        *FLAGS,
        ref,
        home=key.parent,
        check=True,
    )


def _other_key(tmp: Path) -> Path:
    _cosign_run(
        "generate-key-pair", "--output-key-prefix", str(tmp / "other"), home=tmp, check=True
    )
    return tmp / "other"


def _deploy(project: Project, images: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = ["deploy", "--env", "test"]
    if images is not None:
        args += ["--images", str(images)]
    # No cluster: a deploy that passes verification stops at the missing kubeconfig.
    return project.ci(*args, timeout=300, KUBECONFIG=str(project.root / "no-kubeconfig"))


def _images_file(project: Project, name: str, **changes: Any) -> Path:
    """A copy of images.json with one image's record changed."""
    data = json.loads((project.out / "images.json").read_text(encoding="utf-8"))
    for item in data["images"]:
        if item["name"] == name:
            item.update(changes)
            if "digest" in changes:
                item["ref"] = f"{item['repository']}@{changes['digest']}"
    path = project.out / f"images-{name}-changed.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- build and push


def test_push_attests_and_signs_and_cosign_verifies(project: Project, tmp_path: Path) -> None:
    _supply_config(project)
    sha = project.head()
    first = _push(project)
    client = registry.Client(REGISTRY, retries=1)
    key = project.root / "keys" / "cosign.pub"
    assert key.is_file(), "the signing key was not generated on first use"
    other = _other_key(tmp_path)
    for name, result in first.items():
        repo, digest = project.repo(name), result["digest"]
        found = attest.read(client, repo, digest)
        [(image, provenance)] = found.of_type(attest.PROVENANCE_TYPES)
        assert image in provenance.subjects
        assert attest.provenance_revision(provenance.predicate) == sha
        [(_, sbom)] = found.of_type(attest.SPDX_TYPE)
        assert sbom.predicate.get("spdxVersion", "").startswith("SPDX-"), name
        assert result["provenance"] is True
        assert result["revision"] == sha
        assert result["sbom"] is True
        assert result["attestations"] == found.digests()
        assert result["signed"] is True
        assert tag_digests(REGISTRY, repo)[f"{digest.replace(':', '-')}.sig"] == result["signature"]
        assert _cosign_verify(result["ref"], key).returncode == 0
        wrong = _cosign_verify(result["ref"], Path(f"{other}.pub"))
        assert wrong.returncode != 0
    # Nothing changed: no build and no signing, the same digests and signatures.
    again = _push(project)
    for name, result in again.items():
        assert result["status"] == "cached", name
        assert result["signed"] is False
        assert result["digest"] == first[name]["digest"]
        assert result["signature"] == first[name]["signature"]
    # The key pair is lost (a fresh clone, a cleaned checkout): a new one is made, and the
    # cached images are signed with it, or a deploy verifying with it would refuse them.
    shutil.rmtree(project.root / "keys")
    lost = _push(project)
    assert key.is_file(), "no new key pair after the old one was removed"
    for name, result in lost.items():
        assert result["status"] == "cached", name
        assert result["signed"] is True, name
        assert result["signature"] != first[name]["signature"], name
        assert _cosign_verify(result["ref"], key).returncode == 0, name


def test_deploy_verifies_and_refuses(project: Project, tmp_path: Path) -> None:
    _supply_config(project, sbom=False)
    results = _push(project)
    key = project.root / "keys" / "cosign.pub"
    api = results["api"]

    # Signed and attested by ci: verification passes and the deploy goes on to the cluster.
    accepted = _deploy(project)
    assert "refused" not in accepted.stderr, accepted.stderr
    assert accepted.returncode in (2, 3), accepted.stderr
    assert "kubeconfig" in accepted.stderr

    # A later commit that changes no image reuses them; their provenance names the commit
    # that built them, as images.json records, and they are still accepted.
    (project.root / "NOTES.md").write_text("not in any build context\n", encoding="utf-8")
    project.commit("notes")
    reused = _push(project)
    assert {n: r["status"] for n, r in reused.items()} == {"api": "cached", "web": "cached"}
    assert reused["api"]["revision"] == results["api"]["revision"] != project.head()
    accepted = _deploy(project)
    assert "refused" not in accepted.stderr, accepted.stderr
    assert accepted.returncode in (2, 3), accepted.stderr

    # An image pushed without ci (plain docker push): unsigned, refused before Helm.
    rogue = f"{REGISTRY}/{project.repo('api')}:rogue"
    subprocess.run(["docker", "tag", "local/debian:bookworm", rogue], check=True)
    subprocess.run(["docker", "push", "-q", rogue], check=True, capture_output=True)
    rogue_digest = registry.Client(REGISTRY).digest(project.repo("api"), "rogue")
    assert rogue_digest is not None
    refused = _deploy(project, _images_file(project, "api", digest=rogue_digest))
    assert refused.returncode == 1, refused.stderr
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert line == f"error: image api {api['repository']}@{rogue_digest}: refused: not signed"
    assert not (project.out / "release.json").exists()

    # Signed, but by another key.
    other = _other_key(tmp_path)
    _sign_with(Path(f"{other}.key"), f"{api['repository']}@{rogue_digest}")
    refused = _deploy(project, _images_file(project, "api", digest=rogue_digest))
    assert refused.returncode == 1, refused.stderr
    assert f"refused: no signature by key {key.name}" in refused.stderr

    # Signed by the right key, but no provenance (signed by someone holding the key).
    _sign(project, f"{api['repository']}@{rogue_digest}", tmp_path)
    refused = _deploy(project, _images_file(project, "api", digest=rogue_digest))
    assert refused.returncode == 1, refused.stderr
    assert "refused: no provenance attestation" in refused.stderr


def _sign(project: Project, ref: str, _home: Path) -> None:
    _sign_with(project.root / "keys" / "cosign.key", ref)


def _tamper(client: registry.Client, repo: str, digest: str, revision: str) -> str:
    """A copy of the index whose provenance names another commit; returns the new digest."""
    index = client.manifest(repo, digest)
    assert index is not None
    data = index.json()
    for entry in data["manifests"]:
        annotations = entry.get("annotations") or {}
        if annotations.get("vnd.docker.reference.type") != "attestation-manifest":
            continue
        att = client.manifest(repo, entry["digest"])
        assert att is not None
        manifest = att.json()
        for layer in manifest["layers"]:
            statement = json.loads(client.blob(repo, layer["digest"]))
            if not statement["predicateType"].startswith("https://slsa.dev/provenance"):
                continue
            text = json.dumps(statement).replace(_revision_in(statement), revision)
            body = text.encode()
            layer["digest"], layer["size"] = client.put_blob(repo, body), len(body)
        att_body = json.dumps(manifest).encode()
        new_att = registry.Manifest("", att.media_type, att_body)
        entry["digest"] = client.put_manifest(repo, "tampered-att", new_att)
        entry["size"] = len(att_body)
    body = json.dumps(data).encode()
    return client.put_manifest(repo, "tampered", registry.Manifest("", index.media_type, body))


def _revision_in(statement: dict[str, Any]) -> str:
    revision = attest.provenance_revision(statement["predicate"])
    assert revision, "the provenance names no commit"
    return revision


def test_tampered_provenance_is_refused(project: Project, tmp_path: Path) -> None:
    _supply_config(project, sbom=False)
    results = _push(project)
    api = results["api"]
    client = registry.Client(REGISTRY, retries=1)
    forged = _tamper(client, project.repo("api"), api["digest"], "f" * 40)
    ref = f"{api['repository']}@{forged}"

    # Unsigned, as anyone without the key would leave it.
    refused = _deploy(project, _images_file(project, "api", digest=forged))
    assert refused.returncode == 1, refused.stderr
    assert "refused: not signed" in refused.stderr

    # Re-signed with the key: the attestations are not the ones the build recorded ...
    _sign(project, ref, tmp_path)
    refused = _deploy(project, _images_file(project, "api", digest=forged))
    assert refused.returncode == 1, refused.stderr
    assert "refused: attestations differ from the ones the build recorded" in refused.stderr

    # ... and without that record, the provenance names another commit.
    bare = _images_file(project, "api", digest=forged, attestations=[])
    refused = _deploy(project, bare)
    assert refused.returncode == 1, refused.stderr
    assert f"refused: provenance names commit {'f' * 12}" in refused.stderr


# ----------------------------------------------------------------------------- prune


def _seed(client: registry.Client, repo: str, tag: str, branch: str, days: int) -> str:
    """A minimal image (config only) created ``days`` ago on ``branch``; returns its digest."""
    created = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Labels": {"ci.git.branch": branch, "org.opencontainers.image.created": created}
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    body = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": registry.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": client.put_blob(repo, body),
            "size": len(body),
        },
        "layers": [],
    }
    data = json.dumps(manifest).encode()
    return client.put_manifest(repo, tag, registry.Manifest("", registry.OCI_MANIFEST, data))


def test_prune_lists_then_deletes_exactly_what_the_rule_says(project: Project) -> None:
    _supply_config(project, sbom=False)
    client = registry.Client(REGISTRY, retries=1)
    repo = project.repo("api")
    seeded = {
        name: _seed(client, repo, name, branch, days)
        for name, branch, days in (
            ("main-new", "main", 20),
            ("main-old", "main", 30),  # not newest on main, old: deleted
            ("main-released", "main", 40),  # named by a release record: kept
            ("feature-old", "feature", 50),  # newest on feature: kept
            ("feature-older", "feature", 60),  # deleted
            ("fresh", "hotfix", 1),  # young (and newest on hotfix): kept
        )
    }
    sig = _seed(client, repo, seeded["main-old"].replace(":", "-") + ".sig", "", 30)
    project.out.mkdir(parents=True, exist_ok=True)
    (project.out / "release.json").write_text(
        json.dumps({"images": {"api": {"digest": seeded["main-released"]}}}), encoding="utf-8"
    )
    doomed = [seeded["feature-older"], seeded["main-old"]]

    dry = project.ci("images", "prune")
    _ok(dry)
    listed = [x.split()[2] for x in dry.stdout.splitlines() if x.startswith("would delete ")]
    assert listed == [*(f"{repo}@{d}" for d in doomed), "2"], dry.stdout  # then the total
    assert set(tag_digests(REGISTRY, repo)) >= set(seeded)

    real = project.ci("images", "prune", "--delete")
    _ok(real)
    left = tag_digests(REGISTRY, repo)
    assert set(left) == set(seeded) - {"main-old", "feature-older"}
    assert client.manifest(repo, seeded["main-released"]) is not None
    assert client.manifest(repo, sig) is None
    assert "deleted 2 image(s), kept 4" in real.stdout


def test_prune_takes_attestations_and_signature_with_a_real_image(project: Project) -> None:
    """Two builds on main, keep one: the older index goes with its attestation manifests and
    its cosign signature; the newer one and everything it references stay."""
    _supply_config(project, sbom=False)
    path = project.root / "ci.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("keep_days: 7", "keep_days: 0"),
        encoding="utf-8",
    )
    project.commit("keep one image per branch, however young")
    old = _push(project)["api"]
    (project.root / "api" / "src" / "more.txt").write_text("more\n", encoding="utf-8")
    project.commit("change api")
    new = _push(project)["api"]
    assert new["digest"] != old["digest"]
    client = registry.Client(REGISTRY, retries=1)
    repo = project.repo("api")
    index = client.manifest(repo, old["digest"])
    assert index is not None
    old_children = [m["digest"] for m in index.json()["manifests"]]

    real = project.ci("images", "prune", "--delete", "--keep-release", str(project.out / "none"))
    _ok(real)
    assert f"deleted {repo}@{old['digest']}" in real.stdout
    assert client.manifest(repo, old["digest"]) is None
    assert client.manifest(repo, old["signature"]) is None
    assert all(client.manifest(repo, child) is None for child in old_children)
    assert client.manifest(repo, new["digest"]) is not None
    assert client.manifest(repo, new["signature"]) is not None
    assert set(attest.read(client, repo, new["digest"]).digests()) == set(new["attestations"])
