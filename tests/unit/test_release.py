"""release.json and images.json: reading, writing, the promotion checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import release
from ci.errors import ConfigError
from ci.release import ImageRef, ReleaseRecord

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def record(**over: object) -> ReleaseRecord:
    base: dict[str, object] = {
        "env": "staging",
        "namespace": "schedule-staging",
        "release": "schedule-app",
        "revision": 4,
        "previous_revision": 3,
        "git_sha": "0123456789abcdef",
        "images": [ImageRef("backend", "reg/backend", DIGEST_A, "backend")],
        "chart_name": "schedule-app",
        "chart_version": "0.1.0",
        "triggered_by": "alice (push)",
        "time": "2030-01-01T00:00:00Z",
        "run_id": "local",
    }
    base.update(over)
    return ReleaseRecord(**base)  # type: ignore[arg-type]


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    rec = record(smoke={"result": "passed"})
    path = release.write_release(rec, tmp_path)
    data = json.loads(path.read_text())
    assert data["images"]["backend"]["ref"] == f"reg/backend@{DIGEST_A}"
    assert data["previous_revision"] == 3
    back = release.read_release(path)
    assert back == rec
    assert back.smoke_result == "passed"


def test_new_record_has_pending_smoke() -> None:
    assert record().smoke_result == release.SMOKE_PENDING


def test_read_release_names_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    data = record().to_json()
    del data["chart_version"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="not a release manifest: missing or invalid key"):
        release.read_release(path)


def test_read_release_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"release.json not found .*ci deploy"):
        release.read_release(tmp_path / "release.json")


def test_promotion_accepts_tested_release() -> None:
    release.check_for_promotion(
        record(smoke={"result": "passed"}), chart_version="0.1.0", source="r.json"
    )


@pytest.mark.parametrize("smoke", [{"result": "failed"}, {"result": "pending"}, {}])
def test_promotion_refuses_untested_release(smoke: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="expected 'passed'") as exc:
        release.check_for_promotion(record(smoke=smoke), chart_version="0.1.0", source="r.json")
    assert exc.value.exit_code == 2
    assert "\n" not in str(exc.value)


def test_promotion_refuses_other_chart_version() -> None:
    with pytest.raises(ConfigError, match=r"chart version 0\.1\.0 but the chart here is 0\.2\.0"):
        release.check_for_promotion(
            record(smoke={"result": "passed"}), chart_version="0.2.0", source="r.json"
        )


def images_json(tmp_path: Path, images: list[dict[str, object]]) -> Path:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"git": {"sha": "cafe" * 10}, "images": images}))
    return path


def test_load_images_reads_digests_and_sha(tmp_path: Path) -> None:
    path = images_json(
        tmp_path,
        [
            {
                "name": "backend",
                "repository": "r/backend",
                "digest": DIGEST_A,
                "values_key": "backend",
                "ref": f"r/backend@{DIGEST_A}",
            },
            {
                "name": "ui",
                "repository": "r/ui",
                "digest": DIGEST_B,
                "values_key": "frontend",
                "ref": f"r/ui@{DIGEST_B}",
            },
        ],
    )
    refs, sha = release.load_images(path)
    assert sha == "cafe" * 10
    assert [(r.name, r.values_key, r.ref) for r in refs] == [
        ("backend", "backend", f"r/backend@{DIGEST_A}"),
        ("ui", "frontend", f"r/ui@{DIGEST_B}"),
    ]


def test_load_images_refuses_unpushed_image(tmp_path: Path) -> None:
    path = images_json(
        tmp_path, [{"name": "backend", "repository": "r/b", "digest": DIGEST_A, "ref": ""}]
    )
    with pytest.raises(ConfigError, match="image 'backend' has no pushed digest"):
        release.load_images(path)


def test_load_images_missing_file_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"images.json not found .*ci images build --push"):
        release.load_images(tmp_path / "images.json")


def test_missing_images() -> None:
    refs = [ImageRef("backend", "r", DIGEST_A, "backend")]
    assert release.missing_images(refs, ["backend", "frontend"]) == ["frontend"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_ACTOR": "alice", "GITHUB_EVENT_NAME": "push", "USER": "x"}, "alice (push)"),
        ({"GITHUB_ACTOR": "bob"}, "bob"),
        ({"USER": "carol"}, "carol"),
        ({}, "unknown"),
    ],
)
def test_triggered_by(env: dict[str, str], expected: str) -> None:
    assert release.triggered_by(env) == expected


def test_run_id() -> None:
    assert release.run_id({}) == "local"
    assert release.run_id({"GITHUB_RUN_ID": "77", "GITHUB_RUN_ATTEMPT": "2"}) == "77.2"


def test_chart_meta_reads_the_project_chart() -> None:
    root = Path(__file__).resolve().parents[2]
    name, version = release.chart_meta(root / "charts" / "schedule-app")
    assert name == "schedule-app"
    assert version.count(".") == 2
