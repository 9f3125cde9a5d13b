"""The test folders are the test kinds: ``unit``, ``integration`` and ``e2e``.

Why by folder: ``make test-unit`` runs ``tests/unit`` and ``make test`` / ``make test-e2e``
select by marker, so a marker that disagrees with the folder hides a test from one of them.
Each test is marked here by the folder it lives in, and collection fails when a test says
otherwise: a ``tests/unit`` test that asks for a fixture of another folder (a tool, the Docker
daemon, the registry, the cluster) or carries an ``integration``/``e2e`` mark, or a test
marked for a kind other than its folder's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: Folder -> the marker its tests get (unit tests get none: they are what is left).
KINDS = {"unit": None, "integration": "integration", "e2e": "e2e"}
MARKERS = {"integration", "e2e"}


def kind_of(path: Path) -> str | None:
    """The test kind of a file: its first folder below ``tests/``, when that is a kind."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in KINDS else None


def outside_fixtures(item: pytest.Item) -> list[str]:
    """Fixtures ``item`` uses that are defined in a conftest outside ``tests/unit``.

    Pytest's own fixtures (``tmp_path``, ``monkeypatch``) come from plugins, whose base id is
    empty; those of ``tests/conftest.py`` and of other folders name their folder.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    found = []
    for name, defs in info.name2fixturedefs.items():
        baseid = defs[-1].baseid if defs else ""
        if baseid and not (baseid == "tests/unit" or baseid.startswith("tests/unit/")):
            found.append(name)
    return sorted(found)


def problems(item: pytest.Item, kind: str) -> list[str]:
    """Why ``item`` does not belong to the folder ``kind`` it lives in."""
    marks = {m.name for m in item.iter_markers()} & MARKERS
    wanted = KINDS[kind]
    out = [
        f"{item.nodeid}: marked {mark} but lives in tests/{kind}"
        for mark in sorted(marks - {wanted})
    ]
    if kind == "unit":
        out += [
            f"{item.nodeid}: a unit test uses fixture '{name}' of another folder "
            "(a tool or service); move the test to tests/integration or tests/e2e"
            for name in outside_fixtures(item)
        ]
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its folder; refuse a test whose marks or fixtures say otherwise."""
    errors: list[str] = []
    for item in items:
        kind = kind_of(Path(str(item.path)))
        if kind is None:
            continue
        errors += problems(item, kind)
        marker = KINDS[kind]
        if marker is not None:
            item.add_marker(marker)
    if errors:
        raise pytest.UsageError("tests in the wrong folder:\n  " + "\n  ".join(errors))
