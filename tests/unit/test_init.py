"""``ci init``: what it finds in a repository, what it writes, and that it never overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ci import config, scaffold
from ci.cli import main


def repo(tmp_path: Path) -> Path:
    """A repository with two services, one Dockerfile per naming style, and noise to skip."""
    root = tmp_path / "Shop Front"
    files = {
        "services/catalog/Dockerfile": (
            "FROM scratch AS build\nEXPOSE 9000\nFROM scratch\nEXPOSE 8081/tcp\n"
        ),
        "docker/web.Dockerfile": "FROM scratch\n",
        "node_modules/pkg/Dockerfile": "FROM scratch\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_one_image_per_dockerfile_named_after_it_or_its_folder(tmp_path: Path) -> None:
    root = repo(tmp_path)
    _, images, chart, starter = scaffold.plan(root)
    assert images == [
        scaffold.Image("web", Path("docker/web.Dockerfile"), Path("docker"), 8080),
        scaffold.Image(
            "catalog", Path("services/catalog/Dockerfile"), Path("services/catalog"), 8081
        ),
    ]
    assert (chart, starter) == (Path("charts/shop-front"), True)


def test_names_are_made_unique_and_dns_safe(tmp_path: Path) -> None:
    for folder in ("a/api", "b/api"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "Dockerfile.Worker_Jobs").write_text("FROM scratch\n")
    _, images, _, _ = scaffold.plan(tmp_path, project="x")
    assert [i.name for i in images] == ["worker-jobs", "api", "api-2"]


def test_init_writes_a_valid_configuration_a_workflow_and_a_starter_chart(tmp_path: Path) -> None:
    root = repo(tmp_path)
    result = scaffold.init(root, toolkit="acme/toolkit", ref="v3")
    assert Path("ci.yaml") in result.created
    assert Path("charts/shop-front/templates/deployment.yaml") in result.created
    assert Path("charts/shop-front/.yamllint.yaml") in result.created
    cfg = config.load(root / "ci.yaml")  # schema and every named file
    assert [(i.name, i.values_key) for i in cfg.images] == [
        ("web", "services.web"),
        ("catalog", "services.catalog"),
    ]
    assert set(cfg.environments) == {"staging", "prod"}
    assert cfg.environments["prod"].approval is True
    assert cfg.environments["prod"].promote_from == "staging"
    values = yaml.safe_load((root / "charts/shop-front/values.yaml").read_text())
    assert values["services"]["catalog"]["port"] == 8081
    assert values["ingress"]["paths"] == [{"path": "/", "service": "web"}]
    workflow = yaml.safe_load((root / ".github/workflows/ci.yml").read_text())
    job = workflow["jobs"]["pipeline"]
    assert job["uses"] == "acme/toolkit/.github/workflows/pipeline.yml@v3"
    assert (job["with"]["toolkit-repository"], job["with"]["toolkit-ref"]) == ("acme/toolkit", "v3")
    assert job["with"]["config"] == "ci.yaml"


def test_an_existing_chart_is_used_and_no_starter_chart_written(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "deploy/helm/shop").mkdir(parents=True)
    (root / "deploy/helm/shop/Chart.yaml").write_text(
        "apiVersion: v2\nname: shop\nversion: 1.0.0\n"
    )
    (root / "deploy/helm/shop/values.yaml").write_text("{}\n")
    result = scaffold.init(root)
    assert not result.chart_written
    assert not (root / "charts").exists()
    cfg = yaml.safe_load((root / "ci.yaml").read_text())
    assert cfg["chart"]["path"] == "deploy/helm/shop"
    assert cfg["environments"]["staging"]["values"] == ["deploy/helm/shop/values.yaml"]
    assert all("values_key" not in image for image in cfg["images"])


def test_force_over_a_chart_init_made_keeps_the_chart_and_its_layout(tmp_path: Path) -> None:
    root = repo(tmp_path)
    scaffold.init(root)
    values = root / "charts/shop-front/values.yaml"
    values.write_text(values.read_text() + "# edited\n")
    result = scaffold.init(root, force=True)
    assert not result.chart_written
    assert values.read_text().endswith("# edited\n")
    cfg = config.load(root / "ci.yaml")
    assert [i.values_key for i in cfg.images] == ["services.web", "services.catalog"]
    assert cfg.environments["prod"].values[-1].name == "values-prod.yaml"


def test_existing_files_are_kept_unless_force(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "ci.yaml").write_text("# mine\n")
    runner = CliRunner()
    first = runner.invoke(main, ["init", str(root)])
    assert first.exit_code == 0, first.output
    assert "kept ci.yaml (it exists; --force overwrites it)" in first.output
    assert "created .github/workflows/ci.yml" in first.output
    assert (root / "ci.yaml").read_text() == "# mine\n"
    again = runner.invoke(main, ["init", str(root)])
    assert "created" not in again.output
    forced = runner.invoke(main, ["init", "--force", str(root)])
    assert forced.exit_code == 0, forced.output
    assert "overwrote ci.yaml" in forced.output
    assert (root / "ci.yaml").read_text().startswith("# Pipeline configuration of shop-front")


def test_init_refuses_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert not (tmp_path / "missing").exists()


def test_a_tag_is_marked_as_a_deliberate_pin_and_a_sha_needs_no_note(tmp_path: Path) -> None:
    scaffold.init(tmp_path / "a", ref="v2")
    assert (
        "# zizmor: ignore[unpinned-uses]" in (tmp_path / "a/.github/workflows/ci.yml").read_text()
    )
    sha = "0123456789abcdef0123456789abcdef01234567"
    scaffold.init(tmp_path / "b", ref=sha)
    text = (tmp_path / "b/.github/workflows/ci.yml").read_text()
    assert f"pipeline.yml@{sha}\n" in text
    assert f"toolkit-ref: {sha}\n" in text


@pytest.mark.parametrize(("version", "ref"), [("1.4.2", "v1"), ("0.0.0", "v0"), ("x", "main")])
def test_the_workflow_pins_the_toolkits_major(
    version: str, ref: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scaffold, "__version__", version)
    assert scaffold.default_ref() == ref
