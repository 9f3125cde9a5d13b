"""What the smoke checks found: one result per check and the run's result (``smoke.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ci import release
from ci.errors import SmokeError


@dataclass
class CheckResult:
    name: str
    type: str
    status: str = "skipped"  # passed | failed | skipped
    attempts: int = 0
    seconds: float = 0.0
    reason: str = ""
    url: str = ""
    http_status: int | None = None
    body: str = ""
    #: The W3C trace id the check's request carried (http), or looked for (trace).
    trace_id: str = ""

    def failure_text(self) -> str:
        """What failed and the response that failed (status, first 500 characters)."""
        head = f"{self.name}: {self.reason}"
        if self.url:
            head += f" ({self.url})"
        if self.trace_id:
            head += f"\ntrace id: {self.trace_id}"
        if self.http_status is None and not self.body:
            return head
        return f"{head}\nresponse status: {self.http_status}\nresponse body:\n{self.body}"


@dataclass
class SmokeResult:
    env: str
    base_url: str
    checks: list[CheckResult]
    time: str
    duration: float = 0.0
    rollback: str = ""
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return all(c.status == "passed" for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "failed"]

    def raise_if_failed(self) -> None:
        """``SmokeError`` naming the failed checks (and the rollback), their responses as detail."""
        if self.passed:
            return
        names = ", ".join(c.name for c in self.failed)
        extra = f"; {self.rollback}" if self.rollback else ""
        raise SmokeError(
            f"smoke checks failed in {self.env}: {names}{extra}",
            detail="\n\n".join(c.failure_text() for c in self.failed),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "base_url": self.base_url,
            "result": release.SMOKE_PASSED if self.passed else release.SMOKE_FAILED,
            "time": self.time,
            "duration": round(self.duration, 2),
            "rollback": self.rollback,
            "checks": [asdict(c) | {"seconds": round(c.seconds, 2)} for c in self.checks],
        }
