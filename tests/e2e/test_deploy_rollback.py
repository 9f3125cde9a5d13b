"""``ci deploy --rollback REVISION`` on the local cluster: the diff first (``--diff-only``
changes nothing), an unknown revision refused before anything changes, then Helm back to the
revision, waited for, and the app serving again.

It shares the ``e2e`` release with test_deploy.py; run alone, it first deploys until the
release has a revision to go back to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.conftest import E2E

pytestmark = pytest.mark.e2e


def superseded(e2e: E2E) -> list[int]:
    return [int(h["revision"]) for h in e2e.helm_history() if h["status"] == "superseded"]


def test_a_rollback_shows_its_diff_then_goes_back_and_serves(e2e: E2E, images_json: Path) -> None:
    assert images_json.is_file()
    for _ in range(2):
        if superseded(e2e):
            break
        res = e2e.ci("deploy", "--env", "e2e", "--force")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    target = superseded(e2e)[-1]
    before = e2e.helm_history()

    res = e2e.ci("deploy", "--env", "e2e", "--rollback", str(target), "--diff-only")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "diff against revision" in res.stdout
    assert e2e.helm_history() == before, "--diff-only changed the release"

    res = e2e.ci("deploy", "--env", "e2e", "--rollback", "999")
    assert res.returncode == 2, res.stdout[-2000:]
    assert "has no revision 999" in res.stdout + res.stderr
    assert e2e.helm_history() == before

    res = e2e.ci("deploy", "--env", "e2e", "--rollback", str(target))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    new = int(before[-1]["revision"]) + 1
    assert f"rolled back to revision {target} as revision {new}" in res.stdout
    last = e2e.helm_history()[-1]
    assert (int(last["revision"]), last["status"]) == (new, "deployed")
    assert str(last["description"]).startswith(f"Rollback to {target}")

    res = e2e.ci("smoke", "--env", "e2e", *e2e.smoke_args)
    assert res.returncode == 0, res.stdout[-3000:]
