"""``ci smoke`` itself: run the checks, write ``smoke.json``, record the result, maybe roll back.

After a failure right after a deploy, the environment can be rolled back to the revision
recorded as previous in ``release.json`` (see ``rollback_decision``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ci import artifacts, release
from ci.config import Config, Environment
from ci.errors import CiError, ConfigError
from ci.release import ReleaseRecord
from ci.smoke.results import SmokeResult
from ci.smoke.runner import Runner, Sink, Target, ignore_line

SMOKE_FILE = "smoke.json"


def rollback_decision(
    record: ReleaseRecord | None,
    env: Environment,
    *,
    current_run: str,
    live_revision: int | None,
) -> tuple[int | None, str]:
    """Whether failed checks should roll ``env`` back, and why (not).

    Only right after a deploy that made a revision: ``release.json`` is this environment's,
    written by this run, not yet smoke-tested, its revision is still the live one, and it
    recorded a previous revision to return to. A skipped deploy changed nothing, so there is
    nothing to undo. Anything else is reported, not acted on.
    """
    rules: list[tuple[bool, str]] = [
        (not env.rollback_on_smoke_failure, f"rollback_on_smoke_failure is off for '{env.name}'"),
        (
            record is None or record.env != env.name,
            f"no release.json for '{env.name}' from a deploy in this run",
        ),
    ]
    if record is not None:
        rules += [
            (
                record.run_id != current_run,
                f"release.json is from run {record.run_id}, not this run ({current_run})",
            ),
            (
                record.smoke_result != release.SMOKE_PENDING,
                f"revision {record.revision} was already smoke-tested ({record.smoke_result})",
            ),
            (
                record.deploy.get("action") == "skipped",
                f"the deploy made no revision (skipped: {record.deploy.get('reason') or '?'}); "
                f"revision {record.revision} was live before this run",
            ),
            (
                record.previous_revision is None,
                f"revision {record.revision} was the first install; nothing to roll back to",
            ),
            (
                live_revision != record.revision,
                f"live revision is {live_revision}, not the deployed {record.revision}",
            ),
        ]
    for broken, why in rules:
        if broken:
            return None, why
    assert record is not None
    return record.previous_revision, ""


# ----------------------------------------------------------------------------- the step


def base_url_for(env: Environment, override: str | None) -> str:
    url = override or env.base_url
    if not url:
        raise ConfigError(
            f"environment '{env.name}' has no base_url; set it in the configuration "
            "or pass --base-url"
        )
    if not re.match(r"^https?://", url):
        raise ConfigError(f"--base-url {url!r}: expected http:// or https://")
    return url


def run(
    cfg: Config,
    env_name: str,
    out_dir: Path,
    *,
    base_url: str | None = None,
    host_header: str | None = None,
    rollback: bool = True,
    helm_major: int | None = None,
    on_line: Sink = ignore_line,
) -> SmokeResult:
    """Run every check; write ``smoke.json``; record the result in ``release.json``."""
    env = cfg.environment(env_name)
    target = Target(env, base_url_for(env, base_url), host_header, helm_major)
    started = time.monotonic()
    runner = Runner(cfg, target, on_line=on_line)
    result = SmokeResult(env.name, target.base_url, runner.run(), release.now())
    result.duration = time.monotonic() - started
    record = _own_record(out_dir, env.name)
    if not result.passed and rollback:
        result.rollback = _maybe_rollback(cfg, env, record, helm_major, on_line)
    result.path = artifacts.write_json(out_dir / SMOKE_FILE, result.to_json())
    if record is not None:
        record.smoke = {
            "result": release.SMOKE_PASSED if result.passed else release.SMOKE_FAILED,
            "time": result.time,
            "failed": [c.name for c in result.failed],
            "rollback": result.rollback,
        }
        release.write_release(record, out_dir)
    return result


def _own_record(out_dir: Path, env: str) -> ReleaseRecord | None:
    path = out_dir / release.RELEASE_FILE
    if not path.is_file():
        return None
    try:
        record = release.read_release(path)
    except CiError:
        return None
    return record if record.env == env else None


def _maybe_rollback(
    cfg: Config,
    env: Environment,
    record: ReleaseRecord | None,
    helm_major: int | None,
    on_line: Sink,
) -> str:
    """Roll back when ``rollback_decision`` allows; return the sentence saying what happened."""
    from ci import deploy

    live: int | None = None
    if record is not None and env.rollback_on_smoke_failure:
        live = _live_revision(env, helm_major)
    revision, why_not = rollback_decision(
        record, env, current_run=release.run_id(), live_revision=live
    )
    if revision is None:
        return f"no rollback: {why_not}"
    on_line(f"smoke checks failed: rolling {env.name} back to revision {revision}")
    try:
        deploy.rollback(cfg, env.name, revision, helm_major=helm_major)
    except CiError as exc:
        return f"rollback to revision {revision} FAILED: {exc.message}"
    return f"rolled back to revision {revision}"


def _live_revision(env: Environment, helm_major: int | None) -> int | None:
    from ci import deploy, kube
    from ci import helm as helmlib

    try:
        helm = helmlib.find(helm_major)
        with kube.access(env) as acc:
            return deploy.Cluster(helm, env, acc.kubeconfig).revision()
    except (CiError, ValueError, KeyError):
        return None
