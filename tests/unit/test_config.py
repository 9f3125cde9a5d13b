"""Configuration loading: every malformed file gives one line with file, line and key path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci import config
from ci.cli import main
from ci.errors import ConfigError, ConfigInvalid

DATA = Path(__file__).parent.parent / "data" / "config"
BAD = DATA / "bad"
EXPECTED: dict[str, dict[str, object]] = json.loads((BAD / "expected.json").read_text())


def test_at_least_thirty_malformed_configurations_are_kept() -> None:
    assert len(EXPECTED) >= 30
    assert sorted(p.stem for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_configuration_is_rejected_with_one_line(name: str) -> None:
    path = BAD / f"{name}.yaml"
    expected = EXPECTED[name]
    result = CliRunner().invoke(main, ["-c", str(path), "config", "validate"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    head = f"error: {path}:{expected['line']}: "
    assert lines[0].startswith(head), lines[0]
    message = lines[0][len(head) :]
    if expected.get("prefix"):
        assert message.startswith(str(expected["message"])), message
    else:
        assert message == expected["message"]
    assert "Traceback" not in result.output


def test_malformed_configuration_through_the_console_script_has_no_traceback() -> None:
    path = BAD / "image-unknown-key.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "ci", "-c", str(path), "config", "validate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_several_problems_are_all_reported_in_file_order(tmp_path: Path) -> None:
    text = (
        (BAD / "image-unknown-key.yaml")
        .read_text()
        .replace("namespace: demo-staging", "namespace: X")
    )
    path = BAD / "tmp-several.yaml"
    path.write_text(text)
    try:
        with pytest.raises(ConfigInvalid) as info:
            config.load(path)
    finally:
        path.unlink()
    assert [p.location.line for p in info.value.problems if p.location] == [9, 14]
    assert "(and 1 more)" in info.value.message


def test_missing_configuration_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["-c", str(tmp_path / "ci.yaml"), "config", "validate"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'ci.yaml'}: configuration file not found\n"


def test_good_configuration_resolves_defaults_and_paths() -> None:
    cfg = config.load(DATA / "good.yaml")
    assert cfg.project == "demo"  # the chart's name
    assert cfg.images[0].dockerfile == (DATA / "files" / "Dockerfile").resolve()
    assert cfg.images[0].platforms == ("linux/amd64",)
    assert cfg.images[0].values_key == "api"
    env = cfg.environment("staging")
    assert (env.release, env.timeout, env.approval) == ("demo", 600, False)
    assert cfg.smoke.deadline == 180
    assert cfg.registry.repository("api") == "127.0.0.1:5000/demo/api"
    assert cfg.data["registry"]["insecure"] is False


def test_unknown_environment_lists_the_known_ones() -> None:
    cfg = config.load(DATA / "good.yaml")
    with pytest.raises(ConfigError, match=r"unknown environment 'qa' \(expected one of: staging\)"):
        cfg.environment("qa")


def test_config_show_prints_defaults() -> None:
    result = CliRunner().invoke(main, ["-c", str(DATA / "good.yaml"), "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["environments"]["staging"]["timeout"] == "10m"
    assert shown["registry"]["username_env"] == "REGISTRY_USERNAME"


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${HOST:-ghcr.io}", {}, "ghcr.io"),
        ("${HOST:-ghcr.io}", {"HOST": "127.0.0.1:5000"}, "127.0.0.1:5000"),
        ("${HOST:-ghcr.io}", {"HOST": ""}, "ghcr.io"),
        ("${FLAG:-false}", {}, False),
        ("${FLAG:-false}", {"FLAG": "true"}, True),
        ("${N:-3}", {}, 3),
        ("pre-${X}-post", {"X": "mid"}, "pre-mid-post"),
        ("cost: $$5", {}, "cost: $5"),
        ("${UNSET}", {}, ""),
    ],
)
def test_environment_references_expand(value: str, env: dict[str, str], expected: object) -> None:
    assert config.expand_env(value, env) == expected


def test_empty_build_arg_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        (DATA / "good.yaml")
        .read_text()
        .replace(
            "    context: files/ctx\n",
            "    context: files/ctx\n    build_args: {BASE: '${BASE_X:-}', KEEP: 'yes'}\n",
        )
    )
    path = DATA / "tmp-args.yaml"
    path.write_text(text)
    monkeypatch.delenv("BASE_X", raising=False)
    try:
        assert config.load(path).images[0].build_args == {"KEEP": "yes"}
        monkeypatch.setenv("BASE_X", "local/jre:bookworm")
        assert config.load(path).images[0].build_args["BASE"] == "local/jre:bookworm"
    finally:
        path.unlink()


@pytest.mark.parametrize(
    ("text", "expected"), [(90, 90), ("90s", 90), ("5m", 300), ("1h30m", 5400)]
)
def test_durations(text: int | str, expected: int) -> None:
    assert config.seconds(text) == expected


def test_project_configuration_is_valid_when_its_files_exist() -> None:
    """The repository's own ci.yaml must at least pass the schema (files are checked in CI)."""
    root = Path(__file__).parents[2]
    data, lines = config.read_yaml_with_lines(root / "ci.yaml")
    from jsonschema import Draft202012Validator

    assert list(Draft202012Validator(config.schema()).iter_errors(data)) == []
    assert lines[("environments", "prod", "approval")] > 1


def test_config_error_is_an_actions_annotation_under_actions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    path = BAD / "env-unknown-key.yaml"
    result = CliRunner().invoke(main, ["-c", str(path), "config", "validate"])
    assert result.exit_code == 2
    assert result.stdout.startswith(
        f"::error file={path},line=15::environments.staging.kubecontext:"
    )


# ----------------------------------------------------------------------------- overlays


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def overlay_dir(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(DATA / "files", tmp_path / "files")
    shutil.copy(DATA / "good.yaml", tmp_path / "ci.yaml")
    (tmp_path / "files" / "values-local.yaml").write_text("ingress: {}\n")
    return tmp_path


def test_overlay_merges_mappings_and_replaces_lists(overlay_dir: Path) -> None:
    path = _write(
        overlay_dir / "ci.local.yaml",
        "# local\nextends: ci.yaml\nregistry:\n  insecure: true\nenvironments:\n  staging:\n"
        "    values: [files/values-staging.yaml, files/values-local.yaml]\n"
        "    base_url: http://localhost:18080\n",
    )
    cfg = config.load(path)
    assert cfg.registry.host == "127.0.0.1:5000"  # inherited
    assert cfg.registry.insecure is True  # overridden
    env = cfg.environment("staging")
    assert [v.name for v in env.values] == ["values-staging.yaml", "values-local.yaml"]
    assert env.namespace == "demo-staging"
    assert env.base_url == "http://localhost:18080"


def test_overlay_null_removes_an_inherited_key(overlay_dir: Path) -> None:
    base = overlay_dir / "ci.yaml"
    base.write_text(base.read_text() + "    kube: {kubeconfig_env: KUBE_STAGING}\n")
    path = _write(
        overlay_dir / "ci.local.yaml",
        "extends: ci.yaml\nenvironments:\n  staging:\n"
        "    kube: {kubeconfig_env: null, kubeconfig: /tmp/kubeconfig}\n",
    )
    env = config.load(path).environment("staging")
    assert (env.kubeconfig_env, env.kubeconfig) == (None, Path("/tmp/kubeconfig"))


def test_errors_point_at_the_file_that_set_the_key(overlay_dir: Path) -> None:
    base = overlay_dir / "ci.yaml"
    base.write_text(base.read_text().replace("namespace: demo-staging", "namespace: Bad_Ns"))
    path = _write(overlay_dir / "ci.local.yaml", "extends: ci.yaml\nregistry:\n  insecure: 3\n")
    with pytest.raises(ConfigInvalid) as info:
        config.load(path)
    found = sorted((str(p.location), p.message.split(":")[0]) for p in info.value.problems)
    assert found == [
        (f"{path}:3", "registry.insecure"),
        (f"{base}:13", "environments.staging.namespace"),
    ]


def test_deep_merge_merges_mappings_replaces_the_rest_and_null_removes() -> None:
    base = {"a": {"x": 1, "y": [1, 2], "z": {"deep": True}}, "b": 1, "c": {"k": "v"}}
    over = {"a": {"y": [3], "z": None, "n": None}, "b": {"now": "a map"}, "c": "scalar"}
    replaced: list[tuple[tuple[str | int, ...], object]] = []
    merged = config.deep_merge(base, over, on_replace=lambda p, v: replaced.append((p, v)))
    assert merged == {"a": {"x": 1, "y": [3]}, "b": {"now": "a map"}, "c": "scalar"}
    assert replaced == [
        (("a", "y"), [3]),
        (("a", "z"), None),
        (("a", "n"), None),
        (("b",), {"now": "a map"}),
        (("c",), "scalar"),
    ]
    assert base["a"] == {"x": 1, "y": [1, 2], "z": {"deep": True}}  # inputs left as they were


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("extends: nope.yaml\n", "extends: file 'nope.yaml' does not exist"),
        ("extends: ci.local.yaml\n", "extends: 'ci.local.yaml' leads back to this file"),
        ("extends: [a]\n", "extends: expected the path of another configuration file"),
    ],
)
def test_bad_extends(overlay_dir: Path, text: str, message: str) -> None:
    path = _write(overlay_dir / "ci.local.yaml", text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert (info.value.message, str(info.value.location)) == (message, f"{path}:1")
