"""The chart's default images are supported releases, and the local stand-ins built from
Debian packages run the same majors, so the local cluster tests what users will run.

Pure file checks (values.yaml, the stand-ins' Dockerfiles, the chart README): no helm.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "schedule-app"

#: End of community support (endoflife.date): PostgreSQL majors; RabbitMQ supports only the
#: latest minor series of its latest major.
POSTGRES_EOL = {
    "14": "2026-11-12",
    "15": "2027-11-11",
    "16": "2028-11-09",
    "17": "2029-11-08",
    "18": "2030-11-14",
}
RABBITMQ_SUPPORTED = {"4.2"}


def default_values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def test_default_images_are_supported_releases() -> None:
    values = default_values()
    pg_major = str(values["postgresql"]["image"]["tag"]).split(".")[0]
    assert pg_major in POSTGRES_EOL, pg_major
    assert datetime.date.fromisoformat(POSTGRES_EOL[pg_major]) > datetime.date.today()
    mq_series = ".".join(values["rabbitmq"]["image"]["tag"].split("-")[0].split(".")[:2])
    assert mq_series in RABBITMQ_SUPPORTED
    assert values["rabbitmq"]["image"]["tag"].endswith("-management")  # the 15672 port


def test_local_stand_ins_match_the_default_majors() -> None:
    values = default_values()
    pg = (ROOT / "hack/base-images/postgres/Dockerfile").read_text()
    pg_major = str(values["postgresql"]["image"]["tag"]).split(".")[0]
    assert f"postgresql-{pg_major} " in pg or f"postgresql-{pg_major}\n" in pg
    assert f"/usr/lib/postgresql/{pg_major}/bin" in pg
    mq = (ROOT / "hack/base-images/rabbitmq/Dockerfile").read_text()
    # Debian trixie ships rabbitmq-server 4.0: the default's major (4), not its minor.
    assert "FROM local/debian:trixie" in mq
    readme = (CHART / "README.md").read_text()
    assert f"PostgreSQL {pg_major}" in readme
    assert "RabbitMQ 4.0" in readme
