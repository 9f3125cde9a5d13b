"""Deploy inputs checked with the real Helm before anything talks to the cluster: the chart is
rendered with this run's values and ``--set``, so a bad key is a configuration error, and an
unreachable cluster is found only after that, without a release.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci import config, deploy, helm
from ci.cli import main
from ci.deploy import inputs
from ci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "1" * 64


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(ROOT / "ci.yaml")


@pytest.fixture
def images_file(tmp_path: Path, cfg: config.Config) -> Path:
    items = [
        {
            "name": i.name,
            "repository": f"127.0.0.1:5000/st/{i.name}",
            "digest": DIGEST,
            "values_key": i.values_key,
            "ref": f"127.0.0.1:5000/st/{i.name}@{DIGEST}",
        }
        for i in cfg.images
    ]
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"git": {"sha": "abc123" * 6}, "images": items}))
    return path


def test_a_bad_set_is_a_configuration_error_naming_the_key(
    cfg: config.Config, images_file: Path
) -> None:
    opts = deploy.Options(
        env="staging", images_file=images_file, extra_set=("backend.replicas=-3",)
    )
    plan = deploy.make_plan(cfg, opts, {"USER": "alice"})
    with pytest.raises(ConfigError, match=r"values: backend\.replicas: not a key") as caught:
        inputs.render(cfg, helm.find(), plan)
    assert "\n" not in caught.value.message


def test_cli_unreachable_cluster_exits_3_before_any_change(
    tmp_path: Path, images_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real client against a closed port: one line, exit 3, no release.json written."""
    kubeconfig = (
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG_STAGING", kubeconfig)
    # the digests are checked in their registry first; here they are taken to exist
    monkeypatch.setattr("ci.deploy.inputs.missing_digests", lambda _images, _client_for: [])
    out = tmp_path / "out"
    args = ["-c", str(ROOT / "ci.yaml"), "-o", str(out), "deploy", "--env", "staging"]
    res = CliRunner().invoke(main, [*args, "--images", str(images_file)])
    assert res.exit_code == 3
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: cluster unreachable through $KUBECONFIG_STAGING: [Errno 111] Connection refused"
    ]
    assert not (out / "release.json").exists()
