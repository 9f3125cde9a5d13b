"""The Actions layer, checked against the files and the log lines the runner reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import gha
from ci.errors import Location


def read_outputs(path: Path) -> dict[str, str]:
    """Parse GITHUB_OUTPUT as the runner does: ``name=value`` or ``name<<DELIM`` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


@pytest.fixture
def actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    files = {"output": tmp_path / "output", "summary": tmp_path / "summary.md"}
    for f in files.values():
        f.touch()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(files["output"]))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(files["summary"]))
    yield files
    gha._masked.clear()


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    yield
    gha._masked.clear()


def test_outputs_are_read_back_by_the_runner_format(actions: dict[str, Path]) -> None:
    assert gha.set_output("backend-digest", "sha256:" + "a" * 64)
    assert gha.set_output("images", '{"backend": "x"}\n{"frontend": "y"}')
    assert gha.set_output("tricky", "line\nEOF\n=not=a=key")
    values = read_outputs(actions["output"])
    assert values == {
        "backend-digest": "sha256:" + "a" * 64,
        "images": '{"backend": "x"}\n{"frontend": "y"}',
        "tricky": "line\nEOF\n=not=a=key",
    }


def test_output_delimiter_is_random_so_values_cannot_end_the_block(
    actions: dict[str, Path],
) -> None:
    gha.set_output("a", "1")
    gha.set_output("b", "2")
    delimiters = re.findall(r"<<(\S+)", actions["output"].read_text())
    assert len(set(delimiters)) == 2


def test_summary_appends_markdown(actions: dict[str, Path]) -> None:
    table = gha.markdown_table(["image", "digest"], [["backend", "sha256:1"], ["a|b", "x"]])
    assert gha.add_summary("## Images")
    assert gha.add_summary(table)
    text = actions["summary"].read_text()
    assert text.startswith("## Images\n| image | digest |\n| --- | --- |\n")
    assert "| a\\|b | x |" in text


def test_masking_registers_with_runner_and_redacts_everywhere(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gha.mask("s3cr3t-token")
    gha.echo("login with s3cr3t-token")
    gha.error("token s3cr3t-token rejected")
    gha.add_summary("used s3cr3t-token")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "::add-mask::s3cr3t-token"
    assert "s3cr3t-token" not in "\n".join(out.splitlines()[1:])
    assert "login with ***" in out
    assert "s3cr3t-token" not in actions["summary"].read_text()


def test_multiline_secret_is_masked_line_by_line(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gha.mask("apiVersion: v1\nclient-key-data: QUJDREVGRw==\n")
    out = capsys.readouterr().out
    assert "::add-mask::client-key-data: QUJDREVGRw==" in out.splitlines()
    gha.echo("client-key-data: QUJDREVGRw==")
    assert "QUJDREVGRw==" not in capsys.readouterr().out


def test_mask_is_silent_outside_actions_but_still_redacts(
    plain: None, capsys: pytest.CaptureFixture[str]
) -> None:
    gha.mask("hunter22")
    gha.echo("password hunter22")
    assert capsys.readouterr().out == "password ***\n"


def test_annotations_carry_file_line_and_escape(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gha.error("bad value\nsecond line 100%", location=Location("ci,yaml", 12), title="CFG:1")
    gha.warning("no location")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "::error file=ci%2Cyaml,line=12,title=CFG%3A1::bad value%0Asecond line 100%25"
    assert out[1] == "::warning::no location"


def test_plain_errors_go_to_stderr_readably(
    plain: None, capsys: pytest.CaptureFixture[str]
) -> None:
    gha.error("missing key", location=Location("ci.yaml", 3))
    gha.warning("fyi", title="R1")
    captured = capsys.readouterr()
    assert captured.err == "error: ci.yaml:3: missing key\nwarning: [R1] fyi\n"
    assert captured.out == ""


def test_groups(actions: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with gha.group("Build backend"):
        gha.echo("step")
    assert capsys.readouterr().out == "::group::Build backend\nstep\n::endgroup::\n"


def test_group_closes_on_error(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError), gha.group("fails"):
        raise RuntimeError("boom")
    assert capsys.readouterr().out.endswith("::endgroup::\n")


def test_plain_group_is_a_header(plain: None, capsys: pytest.CaptureFixture[str]) -> None:
    with gha.group("Build backend"):
        gha.echo("step")
    assert capsys.readouterr().out == "==> Build backend\nstep\n"


def test_untrusted_output_pauses_workflow_commands(
    actions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with gha.untrusted_output():
        gha.echo("::set-output name=x::evil")
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].removeprefix("::stop-commands::")
    assert len(token) == 32
    assert lines[2] == f"::{token}::"


def test_files_are_not_written_outside_actions(plain: None) -> None:
    assert gha.set_output("x", "1") is False
    assert gha.add_summary("x") is False


def test_text_table_aligns_columns() -> None:
    table = gha.text_table(["image", "status"], [["backend", "built"], ["ui", "cached"]])
    assert table.splitlines() == [
        "image    status",
        "-------  ------",
        "backend  built",
        "ui       cached",
    ]
