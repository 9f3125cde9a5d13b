"""tests/conftest.py marks tests by folder and refuses tests in the wrong one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

INI = "[pytest]\nmarkers =\n  integration: tools\n  e2e: cluster\naddopts = --strict-markers\n"
SHARED_FIXTURE = '\n\n@pytest.fixture\ndef docker() -> str:\n    return "docker"\n'


def tree(root: Path, files: dict[str, str]) -> Path:
    """A project with this repository's tests/conftest.py, a shared fixture and ``files``."""
    (root / "pytest.ini").write_text(INI, encoding="utf-8")
    for kind in ("", "unit", "integration", "e2e"):
        (root / "tests" / kind).mkdir(parents=True, exist_ok=True)
        (root / "tests" / kind / "__init__.py").touch()
    shutil.copy(TESTS / "conftest.py", root / "tests" / "conftest.py")
    with (root / "tests" / "conftest.py").open("a", encoding="utf-8") as fh:
        fh.write(SHARED_FIXTURE)
    for name, text in files.items():
        (root / "tests" / name).write_text("import pytest\n\n\n" + text, encoding="utf-8")
    return root


def collect(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*argv, *args], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )


def test_markers_follow_the_folders(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "unit/test_u.py": "def test_pure(tmp_path, monkeypatch): pass\n",
            "integration/test_i.py": "def test_tool(docker): pass\n",
            "e2e/test_e.py": "def test_cluster(): pass\n",
        },
    )
    assert "tests/integration/test_i.py::test_tool" in collect(root, "-m", "integration").stdout
    e2e = collect(root, "-m", "e2e").stdout
    assert "test_e.py::test_cluster" in e2e
    assert "test_u.py" not in e2e
    assert "test_i.py" not in e2e
    not_e2e = collect(root, "-m", "not e2e").stdout
    assert "test_u.py::test_pure" in not_e2e
    assert "test_i.py::test_tool" in not_e2e
    assert "test_e.py" not in not_e2e


def test_a_test_in_the_wrong_folder_fails_collection(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "unit/test_u.py": "def test_docker(docker): pass\n\n\n"
            "@pytest.mark.integration\ndef test_marked(): pass\n",
            "integration/test_i.py": "@pytest.mark.e2e\ndef test_cluster(): pass\n",
        },
    )
    result = collect(root)
    assert result.returncode == 4, result.stdout + result.stderr
    errors = result.stderr
    assert "tests/unit/test_u.py::test_docker: a unit test uses fixture 'docker'" in errors
    assert "tests/unit/test_u.py::test_marked: marked integration but lives in tests/unit" in errors
    assert (
        "tests/integration/test_i.py::test_cluster: marked e2e but lives in tests/integration"
        in (errors)
    )
