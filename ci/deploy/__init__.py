"""``ci deploy``: ``helm upgrade --install`` by digest, with waiting, rollback, recovery and a diff.

Why the order: every input is checked (environment, values files, digests, release manifest)
before the cluster is touched, and the cluster's reachability before anything is changed, so
bad input stops with one line and nothing half-done. A release left pending by an interrupted
run is recovered first (Helm would otherwise refuse every later deploy), while a pending release
that is still young is treated as a deploy in progress and refused. While Helm waits, a
``kube.Monitor`` reports readiness, hook Jobs and Warning events; when Helm fails, a diagnosis
(failing pods and their logs, events, hook logs, release history) goes with the error.

The parts: ``plan`` (inputs and Helm's argv), ``promotion`` (a release manifest's environment,
commit and branch, and whether the live commit is later than this run's), ``recovery`` (pending
and failed releases), ``skip`` (upgrade or skip: superseded, unchanged), ``diff`` (what an
upgrade would change), ``helmcalls`` (Helm against one environment), ``step`` (the deploy
itself) and ``rollback`` (``--rollback REVISION``, watched like an upgrade). The names the rest
of the toolkit uses are importable from ``ci.deploy``.
"""

from __future__ import annotations

from ci.deploy.diff import (
    REDACTED,
    DiffResult,
    Key,
    ObjectChange,
    diff_manifests,
    index_manifests,
    redact_pair,
)
from ci.deploy.helmcalls import Cluster, history_text
from ci.deploy.plan import (
    Options,
    Plan,
    deploy_info_values,
    image_set_values,
    make_plan,
    set_args,
    string_args,
    upgrade_argv,
)
from ci.deploy.promotion import check as check_promotion
from ci.deploy.recovery import (
    GOOD,
    PENDING,
    STALE_MARGIN,
    Recovery,
    decide_recovery,
    parse_time,
    previous_good,
)
from ci.deploy.rollback import RollbackOptions, RollbackResult, check_target
from ci.deploy.rollback import run as run_rollback
from ci.deploy.step import (
    LOCK_MESSAGE,
    Reporter,
    Result,
    Sink,
    Verifier,
    rollback,
    rolled_back,
    run,
)

__all__ = [
    "GOOD",
    "LOCK_MESSAGE",
    "PENDING",
    "REDACTED",
    "STALE_MARGIN",
    "Cluster",
    "DiffResult",
    "Key",
    "ObjectChange",
    "Options",
    "Plan",
    "Recovery",
    "Reporter",
    "Result",
    "RollbackOptions",
    "RollbackResult",
    "Sink",
    "Verifier",
    "check_promotion",
    "check_target",
    "decide_recovery",
    "deploy_info_values",
    "diff_manifests",
    "history_text",
    "image_set_values",
    "index_manifests",
    "make_plan",
    "parse_time",
    "previous_good",
    "redact_pair",
    "rollback",
    "rolled_back",
    "run",
    "run_rollback",
    "set_args",
    "string_args",
    "upgrade_argv",
]
