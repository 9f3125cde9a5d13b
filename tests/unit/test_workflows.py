"""What zizmor and actionlint cannot know about the workflows: that their steps are the pipeline's
steps (`ci pipeline step NAME`), that the jobs' `needs:` gate each step behind the steps
``ci/pipeline.py`` says it needs, and how inputs, secrets and artifacts are wired through.

Syntax, expressions, pinned actions, permissions, template injection and checkout credentials
are actionlint's and zizmor's audits (`make lint-workflows`). Here the workflows are read, not
run: for an event, the `if:` of each job and step is evaluated (a small evaluator of the
expressions the workflows use) and reusable workflows are expanded with their inputs, which gives
the steps a run would execute and, for each one, the jobs that must succeed before it starts.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from ci import pipeline
from ci.cli import main

ROOT = Path(__file__).resolve().parents[2]
PUSH_WORKFLOW = Path(".github/workflows/ci.yml")
PROD_WORKFLOW = Path(".github/workflows/deploy-prod.yml")

#: Commands that prepare a job rather than being pipeline steps.
SETUP_COMMANDS = {("tools", "install"), ("images", "login"), ("doctor",)}


# ------------------------------------------------------------------------ files


def load_yaml(path: Path) -> dict[str, Any]:
    """A workflow or action file; PyYAML reads the `on:` key as True, which is put back."""
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path}: expected a mapping at the top"
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def workflow_files() -> list[Path]:
    return sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def action_files() -> list[Path]:
    """The local actions and the root action other repositories use (``uses: OWNER/REPO@v1``)."""
    return [*sorted((ROOT / ".github" / "actions").glob("*/action.y*ml")), ROOT / "action.yml"]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def as_list(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


# ------------------------------------------------------------------------ expressions

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.S)
#: Status functions other than success() let a job or step run after a failure: no gate.
STATUS_CHECK = re.compile(r"\b(?:always|failure|cancelled)\s*\(")


def loose_equal(a: Any, b: Any) -> bool:
    """``==`` as Actions compares: strings ignoring case, other mixed types as numbers."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if type(a) is type(b):
        return bool(a == b)
    numbers = []
    for value in (a, b):
        try:
            numbers.append(0.0 if value in (None, "") else float(value))
        except ValueError:
            return False  # NaN equals nothing
    return numbers[0] == numbers[1]


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (
        isinstance(value, float) and math.isnan(value)
    )


def as_text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "", True: "true", False: "false"}[value]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|"
    r"(?P<op>==|!=|&&|\|\||[!(),])|(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)|(?P<bad>\S))"
)
LITERALS = {"true": True, "false": False, "null": None}
FUNCTIONS: Mapping[str, Any] = {  # the status functions as in a run where all went well so far
    "success": lambda: True,
    "always": lambda: True,
    "failure": lambda: False,
    "cancelled": lambda: False,
    "format": lambda text, *args: re.sub(r"\{(\d+)\}", lambda m: as_text(args[int(m[1])]), text),
}
BINARY: list[Mapping[str, Any]] = [  # by precedence, loosest first; && and || return an operand
    {"||": lambda a, b: a if truthy(a) else b},
    {"&&": lambda a, b: b if truthy(a) else a},
    {"==": loose_equal, "!=": lambda a, b: not loose_equal(a, b)},
]


class Expression:
    """The Actions expressions the workflows use: literals, context paths, ``!``, ``==``/``!=``,
    ``&&``/``||``, ``format()`` and the status functions."""

    def __init__(self, text: str, contexts: Mapping[str, Any]) -> None:
        self.text, self.contexts = text, contexts
        self.tokens = [(m.lastgroup or "", m[0].lstrip()) for m in TOKEN.finditer(text)]

    def evaluate(self) -> Any:
        value = self._binary(0)
        assert not self.tokens, f"unexpected {self.tokens} in expression {self.text!r}"
        return value

    def _peek(self) -> str | None:
        return self.tokens[0][1] if self.tokens else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        assert self.tokens, f"expression {self.text!r} ends early"
        assert expected in (None, self.tokens[0][1]), f"expected {expected} in {self.text!r}"
        return self.tokens.pop(0)

    def _binary(self, level: int) -> Any:
        if level == len(BINARY):
            return self._unary()
        value = self._binary(level + 1)
        while self._peek() in BINARY[level]:
            operator = BINARY[level][self._take()[1]]
            value = operator(value, self._binary(level + 1))
        return value

    def _unary(self) -> Any:
        kind, text = self._take()
        if text == "!":
            return not truthy(self._unary())
        if text == "(":
            inner = self._binary(0)
            self._take(")")
            return inner
        if kind in ("str", "num"):
            return text[1:-1].replace("''", "'") if kind == "str" else float(text)
        assert kind == "name", f"unexpected {text!r} in {self.text!r}"
        if text in LITERALS:
            return LITERALS[text]
        if self._peek() == "(":
            return self._call(text)
        head, *rest = text.split(".")
        assert head in self.contexts, f"unknown context {head!r} in {self.text!r}"
        value: Any = self.contexts[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def _call(self, name: str) -> Any:
        assert name in FUNCTIONS, f"{name}() is not known to this test"
        self._take("(")
        args = []
        while self._peek() != ")":
            args.append(self._binary(0))
            if self._peek() == ",":
                self._take()
        self._take(")")
        return FUNCTIONS[name](*args)


def evaluate(value: Any, contexts: Mapping[str, Any]) -> Any:
    """A YAML value with ``${{ }}``: a lone expression keeps its type, else text is interpolated."""
    if not isinstance(value, str):
        return value
    whole = EXPR.fullmatch(value.strip())
    if whole:
        return Expression(whole.group(1), contexts).evaluate()
    return EXPR.sub(lambda m: as_text(Expression(m.group(1), contexts).evaluate()), value)


def condition(value: Any, contexts: Mapping[str, Any]) -> bool:
    """An ``if:`` (with or without ``${{ }}``); absent means success()."""
    if value is None or isinstance(value, bool):
        return value is not False
    text = str(value).strip()
    whole = EXPR.fullmatch(text)
    return truthy(Expression(whole.group(1) if whole else text, contexts).evaluate())


def evaluate_env(env: Mapping[str, Any] | None, contexts: Mapping[str, Any]) -> dict[str, str]:
    return {k: as_text(evaluate(v, contexts)) for k, v in (env or {}).items()}


# ------------------------------------------------------------------------ `ci` in run scripts

SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "time"}
SHELL_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def simple_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a bash script, split at ; & | ( ) and newlines; the target of a
    redirection (> >> < <<<) is dropped, so it is never taken for a command."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        redirect = in_test = False
        for token in lexer:
            if in_test:  # inside [[ ]] the || && < > are operands of the test
                words.append(token)
                in_test = token != "]]"
            elif token and all(c in "<>&" for c in token) and any(c in "<>" for c in token):
                redirect = True
            elif token and all(c in ";&|()" for c in token):
                if words:
                    yield words
                words, redirect = [], False
            elif redirect:
                redirect = False
            else:
                words.append(token)
                in_test = token == "[["
        if words:
            yield words


def command_words(script: str) -> Iterator[list[str]]:
    """Each simple command without leading shell keywords and VAR=value assignments."""
    for command in simple_commands(script):
        words = list(command)
        while words and (words[0] in SHELL_KEYWORDS or re.match(r"^[A-Za-z_]\w*=", words[0])):
            words = words[1:]
        if words:
            yield words


def ci_argv(script: str, env: Mapping[str, str]) -> list[tuple[str, ...]]:
    """The arguments of every `ci` command in ``script``, with $VARS from ``env`` filled in."""

    def expand(word: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group("braced") or m.group("bare")
            return env.get(name, m.group(0))

        return SHELL_VAR.sub(sub, word)

    return [
        tuple(expand(w) for w in words[1:])
        for words in command_words(script)
        if words[0] == "ci" or words[0].endswith("/bin/ci")
    ]


def check_ci_args(args: Sequence[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Parse ``args`` with the real click tree: the command path and the leaf's parameters
    (defaults filled in).

    Unknown commands or options, a missing option value, extra or missing arguments, and
    literal values outside a click.Choice raise AssertionError naming the problem.
    """
    cmd: click.Command = main
    ctx = click.Context(main, info_name="ci")
    path: list[str] = []
    rest = list(args)
    while True:
        try:
            opts, rest, _ = cmd.make_parser(ctx).parse_args(rest)
        except click.UsageError as exc:
            raise AssertionError(f"ci {' '.join(path)}: {exc.format_message()}") from exc
        _check_choices(cmd, opts, path)
        if not isinstance(cmd, click.Group):
            break
        assert rest, f"`ci {' '.join(path)}` needs a subcommand"
        name, rest = rest[0], rest[1:]
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"`ci {' '.join([*path, name])}` is not a command of the CLI"
        path.append(name)
        ctx = click.Context(sub, parent=ctx, info_name=name)
        cmd = sub
    assert not rest, f"`ci {' '.join(path)}`: unexpected arguments {rest}"
    for param in cmd.params:
        assert not param.required or param.name in opts, (
            f"`ci {' '.join(path)}`: {param.get_error_hint(ctx)} is required"
        )
        if param.name is not None:
            opts.setdefault(param.name, param.default)
    return tuple(path), opts


def _check_choices(cmd: click.Command, opts: dict[str, Any], path: list[str]) -> None:
    for param in cmd.params:
        if param.name not in opts or not isinstance(param.type, click.Choice):
            continue
        values = opts[param.name]
        for value in values if isinstance(values, list | tuple) else [values]:
            if isinstance(value, str) and "$" not in value:
                assert value in param.type.choices, (
                    f"`ci {' '.join(path)}`: {value!r} is not one of {list(param.type.choices)}"
                )


def pipeline_step_of(args: Sequence[str]) -> pipeline.Step | None:
    """The pipeline step that `ci ARGS` runs, resolved as `ci pipeline step` resolves it; None
    for any other command. A NAME that is no step fails the test."""
    path, opts = check_ci_args(args)
    if path != ("pipeline", "step"):
        return None
    steps = {s.name: s for s in pipeline.push_pipeline(opts["env"], push=opts["push"])}
    name = opts["name"]
    assert name in steps, f"`ci {' '.join(args)}`: {name!r} is no pipeline step ({list(steps)})"
    return steps[name]


# ------------------------------------------------------------------------ a run, as planned


@dataclass(frozen=True)
class Job:
    """A job of a run: ``file:job`` (a called workflow's jobs below their caller), the jobs that
    must succeed before it starts (through `needs:`, transitively), its GitHub environment."""

    id: str
    waits_for: frozenset[str]
    environment: str | None = None


@dataclass(frozen=True)
class StepRun:
    """A step that a run executes, with its environment and `with:` evaluated."""

    job: Job
    index: int
    step: Mapping[str, Any]
    env: Mapping[str, str]
    given: Mapping[str, str]
    script: str

    @property
    def where(self) -> str:
        return f"{self.job.id} step {self.step.get('name') or self.index}"

    @property
    def uses(self) -> str:
        return str(self.step.get("uses", "")).split("@")[0]

    def ci_calls(self) -> list[tuple[str, ...]]:
        return ci_argv(self.script, self.env)


@dataclass(frozen=True)
class Event:
    """The ``github`` context of a run, the inputs of a dispatch, the repository's secrets and
    what shell steps write to their outputs (``job.step-id``)."""

    github: Mapping[str, Any]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    step_outputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(
        default_factory=lambda: {"KUBECONFIG_STAGING": "kc-staging", "KUBECONFIG_PROD": "kc-prod"}
    )


def github_context(event_name: str, ref: str) -> dict[str, Any]:
    return {
        "event_name": event_name,
        "ref": ref,
        "sha": "1" * 40,
        "run_id": "1001",
        "repository": "example/schedule-tracker",
        "repository_owner": "example",
        "actor": "someone",
        "token": "github-token",
        "event": {"repository": {"default_branch": "main"}},
    }


PUSH_MAIN = Event(github_context("push", "refs/heads/main"))
PUSH_TAG = Event(github_context("push", "refs/tags/v1.2.0"))
PULL_REQUEST = Event(github_context("pull_request", "refs/pull/7/merge"))
PROD_SHA = "2" * 40
PROD_RUN = "4242"


def prod_dispatch(diff_only: bool) -> Event:
    return Event(
        github_context("workflow_dispatch", "refs/heads/main"),
        inputs={"version": "v1.2.0", "diff-only": diff_only},
        step_outputs={"resolve.find": {"sha": PROD_SHA, "run-id": PROD_RUN}},
    )


def topological_jobs(jobs: Mapping[str, Any]) -> list[str]:
    """Jobs in an order a run could execute them: needs first."""
    order: list[str] = []
    pending = list(jobs)
    while pending:
        ready = next((j for j in pending if set(as_list(jobs[j].get("needs"))) <= set(order)), None)
        assert ready is not None, f"job needs form a cycle or name unknown jobs: {pending}"
        order.append(ready)
        pending.remove(ready)
    return order


def input_values(declared: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs with defaults filled in (actionlint checks that they are declared and given)."""
    return {k: given.get(k, (spec or {}).get("default")) for k, spec in (declared or {}).items()}


@dataclass
class JobsSoFar:
    """What the jobs of one workflow run have done so far, as `needs:` sees it."""

    results: dict[str, str] = field(default_factory=dict)  # job -> success | skipped
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    waits: dict[str, frozenset[str]] = field(default_factory=dict)  # job -> must succeed first
    holds: dict[str, frozenset[str]] = field(default_factory=dict)  # job -> ids of its steps' jobs

    def needs_context(self, needs: list[str]) -> dict[str, Any]:
        return {n: {"result": self.results[n], "outputs": self.outputs[n]} for n in needs}

    def starts(self, job: Mapping[str, Any], ctx: Mapping[str, Any]) -> bool:
        """A job starts when its needs succeeded (or `if:` asks for a status) and `if:` holds."""
        ungated = STATUS_CHECK.search(str(job.get("if", "")))
        needs_ok = all(self.results[n] == "success" for n in as_list(job.get("needs")))
        return bool(ungated or needs_ok) and condition(job.get("if"), ctx)

    def gate(self, jobs: Mapping[str, Any], job_id: str, outer: frozenset[str]) -> frozenset[str]:
        """The jobs that must succeed before ``job_id`` starts: its caller's (``outer``), and
        each need with what that need waits for, unless `if:` runs it after a failure anyway or
        the need's failure is ignored (`continue-on-error`)."""
        job = jobs[job_id]
        if STATUS_CHECK.search(str(job.get("if", ""))):
            return outer
        before = set(outer)
        for n in as_list(job.get("needs")):
            if jobs[n].get("continue-on-error", False) is False:
                before |= self.holds[n] | self.waits[n]
        return frozenset(before)


def plan(
    workflow: Path,
    event: Event,
    root: Path = ROOT,
    call: tuple[Job, Mapping[str, Any], Mapping[str, str]] | None = None,
) -> list[StepRun]:
    """The steps a run of ``workflow`` (relative to ``root``) executes for ``event``, in an
    order they could run in; ``call`` is the calling job, its `with:` and `secrets:`."""
    doc = load_yaml(root / workflow)
    if call is None:
        dispatch = doc["on"].get("workflow_dispatch") or {}
        inputs, secrets = input_values(dispatch.get("inputs"), event.inputs), event.secrets
    else:
        inputs, secrets = input_values(doc["on"]["workflow_call"].get("inputs"), call[1]), call[2]
    contexts = {"github": event.github, "inputs": inputs, "vars": {}, "secrets": dict(secrets)}
    wf_env = evaluate_env(doc.get("env"), contexts)
    jobs, done, runs = doc["jobs"], JobsSoFar(), []
    for job_id in topological_jobs(jobs):
        job = jobs[job_id]
        ctx = {**contexts, "needs": done.needs_context(as_list(job.get("needs")))}
        if not done.starts(job, ctx):
            done.results[job_id], done.outputs[job_id] = "skipped", {}
            continue
        prefix, outer = (f"{call[0].id}/", call[0].waits_for) if call else ("", frozenset())
        me = Job(f"{prefix}{workflow.name}:{job_id}", done.gate(jobs, job_id, outer))
        if "uses" in job:
            given = {k: evaluate(v, ctx) for k, v in (job.get("with") or {}).items()}
            passed = evaluate_env(job.get("secrets"), ctx)
            job_runs = plan(Path(job["uses"]), event, root, (me, given, passed))
            done.outputs[job_id] = {}
        else:
            ctx["env"] = wf_env
            job_runs, done.outputs[job_id] = plan_job(me, job, ctx, event, job_id)
        runs += job_runs
        done.holds[job_id] = frozenset({r.job.id for r in job_runs} | {me.id})
        done.waits[job_id], done.results[job_id] = me.waits_for, "success"
    return runs


def plan_job(
    me: Job, job: Mapping[str, Any], ctx: dict[str, Any], event: Event, job_id: str
) -> tuple[list[StepRun], dict[str, str]]:
    """The steps of one job that run, and the job's evaluated `outputs:`."""
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment:
        me = Job(me.id, me.waits_for, as_text(evaluate(environment, ctx)))
    env = {**ctx["env"], **evaluate_env(job.get("env"), ctx)}
    ctx = {**ctx, "env": env, "steps": {}}
    runs = []
    for index, step in enumerate(job["steps"]):
        if condition(step.get("if"), ctx):
            step_env = {**env, **evaluate_env(step.get("env"), ctx)}
            given = evaluate_env(step.get("with"), ctx)
            script = as_text(evaluate(step.get("run"), ctx))
            runs.append(StepRun(me, index, step, step_env, given, script))
        if step.get("id"):
            written = event.step_outputs.get(f"{job_id}.{step['id']}", {})
            ctx["steps"][step["id"]] = {"outputs": dict(written), "outcome": "success"}
    return runs, evaluate_env(job.get("outputs"), ctx)


def pipeline_steps(runs: Sequence[StepRun]) -> list[tuple[StepRun, pipeline.Step]]:
    """The `ci pipeline step` calls of a run, each with the step it resolves to."""
    found = []
    for run in runs:
        for args in run.ci_calls():
            step = pipeline_step_of(args)
            if step is not None:
                found.append((run, step))
    return found


def other_calls(runs: Sequence[StepRun]) -> list[tuple[str, ...]]:
    """The `ci` calls of a run that are not pipeline steps, nor setup commands."""
    calls = [args for run in runs for args in run.ci_calls()]
    return [a for a in calls if check_ci_args(a)[0] not in {("pipeline", "step"), *SETUP_COMMANDS}]


def gates(first: StepRun, then: StepRun) -> bool:
    """Whether ``then`` can start only once ``first`` succeeded: an earlier step of the same job
    (and ``then`` not run after failures), or a step of a job ``then``'s job waits for."""
    if first.step.get("continue-on-error", False) is not False:
        return False
    if first.job.id == then.job.id:
        return first.index < then.index and not STATUS_CHECK.search(str(then.step.get("if", "")))
    return first.job.id in then.job.waits_for


def gating_problems(runs: Sequence[StepRun]) -> list[str]:
    """Each pipeline step that could start before a step it needs (``Step.needs``, transitively)
    succeeded, said as a sentence."""
    found = pipeline_steps(runs)
    problems = []
    for run, step in found:
        for need in sorted(pipeline.requirements(pipeline.push_pipeline(), step.name)):
            if not any(gates(first, run) for first, s in found if s.name == need):
                problems.append(f"{run.where}: `{step.name}` can start before `{need}` succeeded")
    return problems


# ======================================================================== tests: the ci calls


def every_ci_call() -> list[tuple[str, tuple[str, ...]]]:
    """Every `ci` line in every run step of every workflow and action, with variables as-is."""
    found = []
    for path in workflow_files() + action_files():
        doc = load_yaml(path)
        steps = [(rel(path), s) for s in doc.get("runs", {}).get("steps", [])]
        for job_id, job in doc.get("jobs", {}).items():
            steps += [(f"{rel(path)}:{job_id}", s) for s in job.get("steps", [])]
        for where, step in steps:
            found += [(where, args) for args in ci_argv(EXPR.sub("EXPR", step.get("run", "")), {})]
    return found


@pytest.mark.parametrize(
    ("where", "args"), every_ci_call(), ids=[f"{w}:ci {' '.join(a)}" for w, a in every_ci_call()]
)
def test_every_ci_call_names_a_real_command_options_and_step(
    where: str, args: tuple[str, ...]
) -> None:
    pipeline_step_of(args)


def test_pipeline_work_runs_only_as_pipeline_steps() -> None:
    """Besides setup, a workflow runs `ci pipeline step NAME`, deploys a tested release, shows
    a diff (which changes nothing) or rolls back."""
    for where, args in every_ci_call():
        command = check_ci_args(args)[0]
        release = command == ("deploy",) and bool(
            {"--release-manifest", "--diff-only", "--rollback"} & set(args)
        )
        assert command in {("pipeline", "step"), *SETUP_COMMANDS} or release, (
            f"{where}: `ci {' '.join(args)}` does pipeline work outside `ci pipeline step`"
        )


def test_the_argument_checker_rejects_what_the_cli_rejects() -> None:
    with pytest.raises(AssertionError, match="not a command"):
        check_ci_args(["images", "biuld"])
    with pytest.raises(AssertionError, match="No such option"):
        check_ci_args(["chart", "check", "--enviroment", "staging"])
    with pytest.raises(AssertionError, match="requires an argument"):
        check_ci_args(["images", "build", "--only"])
    with pytest.raises(AssertionError, match="not one of"):
        check_ci_args(["images", "build", "--builder", "kaniko"])
    with pytest.raises(AssertionError, match="needs a subcommand"):
        check_ci_args(["chart"])
    with pytest.raises(AssertionError, match="is no pipeline step"):
        pipeline_step_of(["pipeline", "step", "deplyo"])
    assert check_ci_args(["-c", "x.yaml", "images", "build", "--push", "--only", "backend"])[0] == (
        "images",
        "build",
    )
    assert pipeline_step_of(["pipeline", "step", "images", "--no-push"]) == pipeline.Step(
        "images", ("images", "build"), ("config",)
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("inputs.id == '' && !inputs.flag", True),
        ("inputs.id || 'fallback'", "fallback"),
        ("!inputs.flag == true", True),  # ! binds before ==
        ("github.ref == format('REFS/heads/{0}', 'main')", True),  # strings ignore case
        ("null == '' && 0 == false", True),
        ("inputs.id != '' || failure()", False),
        ("always() && (inputs.flag || inputs.missing)", None),
    ],
)
def test_expressions_evaluate_as_actions_evaluates_them(text: str, value: Any) -> None:
    contexts = {"inputs": {"id": "", "flag": False}, "github": {"ref": "refs/heads/main"}}
    assert Expression(text, contexts).evaluate() == value
    with pytest.raises(AssertionError):
        Expression(text + " ]", contexts).evaluate()


def test_ci_lines_are_found_through_continuations_and_operators() -> None:
    script = 'set -e\nci images build \\\n  --push --only "$NAME"\nmake x && ci chart check # c\n'
    assert ci_argv(script, {"NAME": "backend"}) == [
        ("images", "build", "--push", "--only", "backend"),
        ("chart", "check"),
    ]
    assert ci_argv('echo "ci images build"; FOO=1 ci doctor', {}) == [("doctor",)]


# ======================================================================== tests: the gating


def test_a_push_to_the_default_branch_runs_every_pipeline_step_once() -> None:
    steps = [step for _, step in pipeline_steps(plan(PUSH_WORKFLOW, PUSH_MAIN))]
    assert sorted(steps, key=lambda s: s.name) == sorted(
        pipeline.push_pipeline("staging"), key=lambda s: s.name
    )
    assert not other_calls(plan(PUSH_WORKFLOW, PUSH_MAIN))


@pytest.mark.parametrize("event", [PUSH_MAIN, PUSH_TAG, PULL_REQUEST], ids=["main", "tag", "pr"])
def test_every_step_waits_for_the_steps_pipeline_py_says_it_needs(event: Event) -> None:
    assert gating_problems(plan(PUSH_WORKFLOW, event)) == []


REUSABLE_WORKFLOW = Path(".github/workflows/pipeline.yml")

GATING_BREAKS = {
    "staging needs only build": (
        ".github/workflows/pipeline.yml",
        "needs: [build, chart]",
        "needs: [build]",
        "`deploy` can start before `chart` succeeded",
    ),
    "staging needs no build": (
        ".github/workflows/pipeline.yml",
        "needs: [build, chart]",
        "needs: [chart]",
        "`deploy` can start before `images` succeeded",
    ),
    "staging runs always": (
        ".github/workflows/pipeline.yml",
        "      inputs.deploy-environment != '' &&\n",
        "      always() && inputs.deploy-environment != '' &&\n",
        "`deploy` can start before `config` succeeded",
    ),
    "a deploy failure is ignored": (
        ".github/workflows/pipeline.yml",
        "      - name: Deploy the images built by this run\n",
        "      - name: Deploy the images built by this run\n        continue-on-error: true\n",
        "`smoke` can start before `deploy` succeeded",
    ),
    "smoke runs after a failed deploy": (
        ".github/workflows/pipeline.yml",
        "      - name: Smoke checks\n        env:",
        "      - name: Smoke checks\n        if: always()\n        env:",
        "`smoke` can start before `deploy` succeeded",
    ),
}


@pytest.mark.parametrize("case", GATING_BREAKS.values(), ids=list(GATING_BREAKS))
def test_the_gating_check_finds_a_step_that_no_longer_waits(
    case: tuple[str, str, str, str], tmp_path: Path
) -> None:
    file, old, new, problem = case
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    text = (tmp_path / file).read_text()
    assert text.count(old) == 1, f"{file} no longer holds {old!r}"
    (tmp_path / file).write_text(text.replace(old, new))
    problems = gating_problems(plan(PUSH_WORKFLOW, PUSH_MAIN, tmp_path))
    assert any(problem in p for p in problems), problems


def test_the_staging_deploy_waits_for_lint_and_unit_tests() -> None:
    runs = plan(PUSH_WORKFLOW, PUSH_MAIN)
    deploy = next(run for run, step in pipeline_steps(runs) if step.name == "deploy")
    for target in ("lint", "test-unit"):
        checks = [r for r in runs if ["make", target] in command_words(r.script)]
        assert checks, f"no job runs `make {target}`"
        assert all(gates(c, deploy) for c in checks), f"the deploy does not wait for {target}"


def makefile_recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_make_ci_local_runs_the_steps_the_push_workflow_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make ci-local` is `ci pipeline run`: the list that the workflow's steps are taken from."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^CI\s*:?=\s*\$\(BIN\)/ci\s*$", makefile, re.M), "$(CI) is not the ci CLI"
    runs = [line for line in makefile_recipe("ci-local") if re.search(r"\$\(CI\) pipeline ", line)]
    assert len(runs) == 1, f"ci-local does not run `$(CI) pipeline run` once: {runs}"
    args = shlex.split(runs[0].split("$(CI)", 1)[1])
    assert check_ci_args(args)[0] == ("pipeline", "run"), runs[0]

    ran: list[pipeline.Step] = []

    def record(steps: Sequence[pipeline.Step], **_: Any) -> pipeline.PipelineResult:
        ran.extend(steps)
        return pipeline.PipelineResult()

    monkeypatch.setattr(pipeline, "run", record)
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["-o", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    workflow = [step for _, step in pipeline_steps(plan(PUSH_WORKFLOW, PUSH_MAIN))]
    assert sorted(ran, key=lambda s: s.name) == sorted(workflow, key=lambda s: s.name)
    for i, step in enumerate(ran):
        assert pipeline.requirements(ran, step.name) <= {s.name for s in ran[:i]}, step.name


# ======================================================================== tests: events


def test_a_pull_request_builds_and_checks_without_pushing_or_deploying() -> None:
    runs = plan(PUSH_WORKFLOW, PULL_REQUEST)
    steps = {step.name: step for _, step in pipeline_steps(runs)}
    expected = {s.name: s for s in pipeline.push_pipeline(push=False)}
    assert steps == {name: expected[name] for name in ("config", "images", "chart")}
    assert "--push" not in steps["images"].args
    assert not [a for r in runs for a in r.ci_calls() if a == ("images", "login")]
    assert not other_calls(runs)


def test_a_tag_pushes_images_but_does_not_deploy() -> None:
    runs = plan(PUSH_WORKFLOW, PUSH_TAG)
    assert sorted(step.name for _, step in pipeline_steps(runs)) == ["chart", "config", "images"]
    assert "--push" in next(s for _, s in pipeline_steps(runs) if s.name == "images").args
    assert ("images", "login") in [a for r in runs for a in r.ci_calls()]


def test_the_registry_login_comes_before_the_push() -> None:
    runs = plan(PUSH_WORKFLOW, PUSH_MAIN)
    login = next(r for r in runs if ("images", "login") in r.ci_calls())
    push = next(r for r, step in pipeline_steps(runs) if step.name == "images")
    assert gates(login, push)


# ======================================================================== tests: wiring


def artifact(runs: Sequence[StepRun], kind: str, name: str) -> StepRun:
    found = [r for r in runs if r.uses == f"actions/{kind}-artifact" and r.given["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind}s of artifact {name!r}"
    return found[0]


def test_the_staging_deploy_uses_the_digests_the_build_uploaded() -> None:
    runs = plan(PUSH_WORKFLOW, PUSH_MAIN)
    by_name = {step.name: run for run, step in pipeline_steps(runs)}
    upload, download = artifact(runs, "upload", "images"), artifact(runs, "download", "images")
    assert upload.given["path"] == ".ci-out/images.json"
    assert gates(by_name["images"], upload), "the digests are uploaded before they are built"
    assert (download.given["path"], download.given.get("run-id")) == (".ci-out", None)
    assert gates(upload, download), "the digests are downloaded before they are uploaded"
    assert gates(download, by_name["deploy"]), "the deploy starts before it has the digests"
    kept = artifact(runs, "upload", "release-staging")
    assert kept.given["path"] == ".ci-out/release.json"
    assert gates(by_name["smoke"], kept), "the release manifest is kept before its smoke checks"


def test_prod_deploys_the_release_manifest_staging_tested_without_rebuilding() -> None:
    staging = artifact(plan(PUSH_WORKFLOW, PUSH_MAIN), "upload", "release-staging")
    runs = plan(PROD_WORKFLOW, prod_dispatch(diff_only=False))
    release_deploy = ("deploy", "--env", "prod", "--release-manifest", "release/release.json")
    assert other_calls(runs) == [(*release_deploy, "--diff-only"), release_deploy]
    assert [step for _, step in pipeline_steps(runs)] == [
        pipeline.Step("smoke", ("smoke", "--env", "prod"), ("deploy",))
    ]
    deploy = next(r for r in runs if r.ci_calls() == [release_deploy])
    [download] = [
        r
        for r in runs
        if r.uses == "actions/download-artifact" and r.given["name"] == "release-staging"
        if r.job == deploy.job
    ]
    assert download.given["run-id"] == PROD_RUN
    assert f"{download.given['path']}/{Path(staging.given['path']).name}" == "release/release.json"
    checkouts = [r for r in runs if r.uses == "actions/checkout" and "path" not in r.given]
    assert {r.given["ref"] for r in checkouts} == {PROD_SHA}, "prod checks out the tested commit"
    assert {r.given["fetch-depth"] for r in checkouts} == {"0"}, "no origin/BRANCH to check"
    smoke = next(r for r, _ in pipeline_steps(runs))
    assert gates(download, deploy), "the release deploy starts before it has the manifest"
    assert gates(deploy, smoke), "the prod smoke checks start before the deploy succeeded"


def test_prod_diff_only_shows_the_diff_and_changes_nothing() -> None:
    runs = plan(PROD_WORKFLOW, prod_dispatch(diff_only=True))
    assert other_calls(runs) == [
        ("deploy", "--env", "prod", "--release-manifest", "release/release.json", "--diff-only"),
    ]
    assert not pipeline_steps(runs)
    assert not [r for r in runs if r.uses == "actions/upload-artifact"]


def test_the_prod_workflow_takes_a_version_and_a_diff_only_switch() -> None:
    inputs = load_yaml(ROOT / PROD_WORKFLOW)["on"]["workflow_dispatch"]["inputs"]
    assert inputs["version"]["required"] is True
    assert inputs["diff-only"]["type"] == "boolean"
    assert inputs["diff-only"]["default"] is False


# ======================================================================== tests: approval


ROLLBACK_WORKFLOW = Path(".github/workflows/rollback.yml")


def rollback_dispatch(env: str = "prod", revision: str = "3") -> Event:
    return Event(
        github_context("workflow_dispatch", "refs/heads/main"),
        inputs={"environment": env, "revision": revision},
    )


def deploy_calls(run: StepRun) -> list[tuple[str, ...]]:
    return [args for args in run.ci_calls() if args[0] == "deploy"]


def approval_problems(runs: Sequence[StepRun], github_env: str) -> list[str]:
    """What keeps reviewers from approving what they saw, said as sentences: each `ci deploy`
    that changes the cluster must run in the protected ``github_env``, in a job that waits for
    a job outside any GitHub environment (so before the approval) that showed the same call
    with ``--diff-only``."""
    shows = [(r, a) for r in runs for a in deploy_calls(r) if "--diff-only" in a]
    changes = [(r, a) for r in runs for a in deploy_calls(r) if "--diff-only" not in a]
    problems = [] if shows else ["no step shows the diff"]
    problems += [
        f"{r.where}: the diff runs in the environment {r.job.environment}, after its approval"
        for r, _ in shows
        if r.job.environment is not None
    ]
    for run, args in changes:
        if run.job.environment != github_env:
            problems.append(f"{run.where}: changes the cluster outside {github_env}")
        before = [
            (r, a) for r, a in shows if r.job.id != run.job.id and r.job.id in run.job.waits_for
        ]
        if not before:
            problems.append(f"{run.where}: can start before the diff was shown")
        elif not any(tuple(x for x in a if x != "--diff-only") == args for _, a in before):
            problems.append(f"{run.where}: the diff shown was not of `ci {' '.join(args)}`")
    return problems


def test_prod_reviewers_approve_the_diff_they_saw() -> None:
    runs = plan(PROD_WORKFLOW, prod_dispatch(diff_only=False))
    assert approval_problems(runs, "production") == []


@pytest.mark.parametrize("env", ["prod", "staging"])
def test_a_rollback_is_approved_after_its_diff(env: str) -> None:
    github_env = {"prod": "production", "staging": "staging"}[env]
    runs = plan(ROLLBACK_WORKFLOW, rollback_dispatch(env, "3"))
    assert approval_problems(runs, github_env) == []
    calls = [a for r in runs for a in deploy_calls(r)]
    assert calls == [
        ("deploy", "--env", env, "--rollback", "3", "--diff-only"),
        ("deploy", "--env", env, "--rollback", "3"),
    ]


def test_the_rollback_workflow_takes_an_environment_of_ci_yaml_and_a_revision() -> None:
    from ci import config

    inputs = load_yaml(ROOT / ROLLBACK_WORKFLOW)["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["type"] == "choice"
    assert set(inputs["environment"]["options"]) == set(config.load(ROOT / "ci.yaml").environments)
    assert inputs["revision"]["required"] is True


APPROVAL_BREAKS = {
    "the deploy no longer waits for the diff": (
        PROD_WORKFLOW,
        ".github/workflows/deploy.yml",
        "    needs: [diff] # the approval below comes after the diff, and only if it succeeded\n"
        "    if: ${{ !inputs.diff-only }}\n",
        "    if: ${{ !inputs.diff-only }}\n",
        "can start before the diff was shown",
    ),
    "the diff runs after the approval": (
        PROD_WORKFLOW,
        ".github/workflows/deploy.yml",
        "    timeout-minutes: 20\n",
        "    timeout-minutes: 20\n    environment:\n      name: ${{ inputs.github-environment }}\n",
        "the diff runs in the environment production, after its approval",
    ),
    "the diff shows another release": (
        PROD_WORKFLOW,
        ".github/workflows/deploy.yml",
        "--release-manifest release/release.json --diff-only",
        "--diff-only",
        "the diff shown was not of `ci deploy --env prod --release-manifest",
    ),
    "the rollback no longer waits for its diff": (
        ROLLBACK_WORKFLOW,
        ".github/workflows/rollback.yml",
        "    needs: [diff] # the approval below comes after the diff, and only if it succeeded\n",
        "",
        "can start before the diff was shown",
    ),
    "the prod rollback runs unprotected": (
        ROLLBACK_WORKFLOW,
        ".github/workflows/rollback.yml",
        "name: ${{ inputs.environment == 'prod' && 'production' || 'staging' }}",
        "name: staging",
        "changes the cluster outside production",
    ),
    "the rollback diff shows another revision": (
        ROLLBACK_WORKFLOW,
        ".github/workflows/rollback.yml",
        '--rollback "$REVISION" --diff-only',
        "--rollback 1 --diff-only",
        "the diff shown was not of `ci deploy --env prod --rollback 3`",
    ),
}


@pytest.mark.parametrize("case", APPROVAL_BREAKS.values(), ids=list(APPROVAL_BREAKS))
def test_the_approval_check_finds_a_change_reviewers_did_not_see(
    case: tuple[Path, str, str, str, str], tmp_path: Path
) -> None:
    workflow, file, old, new, problem = case
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    text = (tmp_path / file).read_text()
    assert text.count(old) == 1, f"{file} no longer holds {old!r}"
    (tmp_path / file).write_text(text.replace(old, new))
    event = prod_dispatch(diff_only=False) if workflow == PROD_WORKFLOW else rollback_dispatch()
    problems = approval_problems(plan(workflow, event, tmp_path), "production")
    assert any(problem in p for p in problems), problems


def test_prod_jobs_pass_the_default_branch_the_promotion_check_needs() -> None:
    from ci.deploy import promotion

    for run, _ in deploy_runs("prod"):
        assert run.env.get(promotion.BRANCH_VARIABLE) == "main", run.where


# ======================================================================== tests: concurrency


def push_event(run_id: str, event: str = "push", ref: str = "refs/heads/main") -> Event:
    return Event({**github_context(event, ref), "run_id": run_id})


def run_concurrency(path: Path, event: Event) -> tuple[str, bool]:
    group = load_yaml(path)["concurrency"]
    ctx = {"github": event.github, "inputs": {}, "vars": {}}
    return as_text(evaluate(group["group"], ctx)), truthy(
        evaluate(group["cancel-in-progress"], ctx)
    )


def concurrency_problems(path: Path) -> list[str]:
    """GitHub cancels the pending run of a group when another is queued, whatever
    cancel-in-progress says: no two pushes (branch or tag) may share a group, none may cancel;
    a pull request's runs share one group and cancel the older run."""
    problems = []
    for ref in ("refs/heads/main", "refs/tags/v1.2.0"):
        pushes = [run_concurrency(path, push_event(i, ref=ref)) for i in ("11", "12", "13")]
        if len({group for group, _ in pushes}) != len(pushes):
            problems.append(f"pushes of {ref} share a group: a queued one is cancelled")
        if any(cancel for _, cancel in pushes):
            problems.append(f"a push of {ref} cancels a running one")
    pr = [run_concurrency(path, push_event(i, "pull_request", "refs/pull/7/merge")) for i in "12"]
    if pr[0][0] != pr[1][0] or not pr[0][1]:
        problems.append("a pull request's older run is not cancelled")
    return problems


def test_pushes_are_never_cancelled_and_pull_requests_supersede_their_older_runs() -> None:
    assert concurrency_problems(ROOT / PUSH_WORKFLOW) == []


def test_the_workflow_ci_init_writes_never_cancels_a_push_either(tmp_path: Path) -> None:
    assert concurrency_problems(tmp_path / adopter_workflow(tmp_path)) == []


@pytest.mark.parametrize(
    ("group", "cancel", "problem"),
    [
        ("ci-${{ github.ref }}", None, "pushes of refs/heads/main share a group"),
        (None, "true", "a push of refs/heads/main cancels a running one"),
        ("ci-${{ github.run_id }}", None, "a pull request's older run is not cancelled"),
    ],
)
def test_the_concurrency_check_finds_a_push_that_can_be_cancelled(
    group: str | None, cancel: str | None, problem: str, tmp_path: Path
) -> None:
    text = (ROOT / PUSH_WORKFLOW).read_text()
    old_group = "ci-${{ github.event_name == 'pull_request' && github.ref || github.run_id }}"
    old_cancel = "cancel-in-progress: ${{ github.event_name == 'pull_request' }}"
    assert text.count(old_group) == 1
    assert text.count(old_cancel) == 1
    if group is not None:
        text = text.replace(old_group, group)
    if cancel is not None:
        text = text.replace(old_cancel, f"cancel-in-progress: {cancel}")
    (tmp_path / "ci.yml").write_text(text)
    problems = concurrency_problems(tmp_path / "ci.yml")
    assert any(p.startswith(problem) for p in problems), problems


def deploy_runs(env: str) -> list[tuple[StepRun, tuple[str, ...]]]:
    """The steps that deploy to or smoke-test ``env``, with their `ci` arguments."""
    workflow, event = (
        (PUSH_WORKFLOW, PUSH_MAIN) if env == "staging" else (PROD_WORKFLOW, prod_dispatch(False))
    )
    found = []
    for run in plan(workflow, event):
        for args in run.ci_calls():
            step = pipeline_step_of(args)
            command = step.args if step else args
            if command[0] in ("deploy", "smoke") and "--diff-only" not in command:
                found.append((run, command))
    assert {c[0] for _, c in found} == {"deploy", "smoke"}, found
    return found


@pytest.mark.parametrize(("env", "github_env"), [("staging", "staging"), ("prod", "production")])
def test_deploys_run_in_their_github_environment_with_the_kubeconfig_ci_yaml_names(
    env: str, github_env: str
) -> None:
    from ci import config

    secret = config.load(ROOT / "ci.yaml").environments[env].kubeconfig_env
    assert secret, f"ci.yaml gives {env} no kube.kubeconfig_env"
    for run, args in deploy_runs(env):
        assert args[args.index("--env") + 1] == env, run.where
        assert run.job.environment == github_env, f"{run.where}: runs in {run.job.environment}"
        assert run.env.get(secret) == PUSH_MAIN.secrets[secret], f"{run.where}: no {secret}"


# ======================================================================== tests: practices


def all_jobs() -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (f"{rel(p)}:{j}", job) for p in workflow_files() for j, job in load_yaml(p)["jobs"].items()
    ]


def shared_deploy_groups(root: Path = ROOT) -> list[str]:
    """Jobs that change an environment (they run in a GitHub environment) and share a job-level
    concurrency group between runs. GitHub keeps one pending job per group and cancels it when
    another queues, so a push's deploy would vanish; `ci deploy` holds the environment's Lease
    instead, which makes deploys wait for each other without cancelling any."""
    problems = []
    for path in sorted((root / ".github" / "workflows").glob("*.y*ml")):
        for job_id, job in load_yaml(path)["jobs"].items():
            if "environment" not in job or "concurrency" not in job:
                continue
            spec = job["concurrency"]
            group = spec.get("group") if isinstance(spec, dict) else spec
            runs = [
                as_text(evaluate(group, {"github": push_event(i).github, "inputs": {}, "vars": {}}))
                for i in ("11", "12")
            ]
            if runs[0] == runs[1]:
                problems.append(f"{path.name}:{job_id} shares concurrency group {runs[0]!r}")
    return problems


def test_no_deploy_job_shares_a_concurrency_group_between_runs() -> None:
    assert [w for w, j in all_jobs() if "environment" in j], "no job runs in a GitHub environment"
    assert shared_deploy_groups() == []
    assert load_yaml(ROOT / PROD_WORKFLOW)["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize(
    ("file", "group"),
    [
        ("pipeline.yml", "deploy-${{ inputs.deploy-environment }}"),
        ("deploy.yml", "deploy-${{ inputs.environment }}"),
        ("rollback.yml", "deploy-${{ inputs.environment }}"),
    ],
)
def test_the_group_check_finds_a_deploy_job_that_can_be_cancelled(
    file: str, group: str, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    path = tmp_path / ".github" / "workflows" / file
    text = path.read_text()
    anchor = "    permissions:\n      contents: read\n"
    at = text.index(anchor, text.index("\n    environment:\n      name: "))
    shared = f"    concurrency:\n      group: {group}\n      cancel-in-progress: false\n"
    path.write_text(text[:at] + shared + text[at:])
    assert [p.split(" ")[0].split(":")[0] for p in shared_deploy_groups(tmp_path)] == [file]


def shallow_deploys(runs: Sequence[StepRun]) -> list[str]:
    """Deploy steps whose job checks the repository out without the history that tells whether
    the live release's commit descends from this one (the superseded check)."""
    problems = []
    for run in runs:
        for args in run.ci_calls():
            step = pipeline_step_of(args)
            command = step.args if step else args
            if command[0] != "deploy" or {"--diff-only", "--rollback"} & set(command):
                continue
            checkouts = [
                r
                for r in runs
                if r.job == run.job and r.uses == "actions/checkout" and "path" not in r.given
            ]
            assert checkouts, f"{run.where}: deploys without a checkout"
            problems += [
                f"{c.where}: fetch-depth {c.given.get('fetch-depth', '1')}"
                for c in checkouts
                if c.given.get("fetch-depth") != "0"
            ]
    return problems


def test_every_deploy_checks_out_the_history_the_superseded_check_needs() -> None:
    assert shallow_deploys(plan(PUSH_WORKFLOW, PUSH_MAIN)) == []
    assert shallow_deploys(plan(PROD_WORKFLOW, prod_dispatch(diff_only=False))) == []


def test_the_depth_check_finds_a_shallow_deploy_checkout(tmp_path: Path) -> None:
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    path = tmp_path / REUSABLE_WORKFLOW
    text = path.read_text()
    assert text.count("          fetch-depth: 0\n") == 1
    path.write_text(text.replace("          fetch-depth: 0\n", ""))
    problems = shallow_deploys(plan(PUSH_WORKFLOW, PUSH_MAIN, tmp_path))
    assert problems == ["ci.yml:pipeline/pipeline.yml:deploy step Check out: fetch-depth 1"]


def test_caller_and_called_concurrency_groups_never_collide() -> None:
    """A caller holding the same group as the job it calls would wait for itself forever."""
    called = {
        str(job.get("concurrency", {}).get("group"))
        for workflow in (".github/workflows/deploy.yml", REUSABLE_WORKFLOW)
        for job in load_yaml(ROOT / workflow)["jobs"].values()
    }
    for path in (PUSH_WORKFLOW, PROD_WORKFLOW):
        assert str(load_yaml(ROOT / path).get("concurrency", {}).get("group")) not in called


SECRET_REF = re.compile(r"secrets\.|github\.token|GITHUB_TOKEN")
#: What a step holding a secret may run: `ci`, the GitHub CLI, and shell builtins.
SECRET_STEP_PROGRAMS = {"ci", "gh", "echo", "exit", "[["}


def test_secrets_reach_only_the_steps_that_need_them_and_are_never_printed() -> None:
    steps: list[tuple[str, Mapping[str, Any]]] = []
    for path in workflow_files() + action_files():
        doc = load_yaml(path)
        assert not SECRET_REF.search(yaml.safe_dump(doc.get("env", {}))), rel(path)
        steps += [(rel(path), s) for s in doc.get("runs", {}).get("steps", [])]
        for job_id, job in doc.get("jobs", {}).items():
            assert not SECRET_REF.search(yaml.safe_dump(job.get("env", {}))), f"{job_id}: job env"
            steps += [(f"{rel(path)}:{job_id}", s) for s in job.get("steps", [])]
    for where, step in steps:
        script = str(step.get("run", ""))
        assert not SECRET_REF.search(script), f"{where}: a secret expression in a run script"
        assert not re.search(r"\bset\s+-\w*x|\bprintenv\b|^\s*env\s*$", script, re.M), where
        secret_vars = [k for k, v in (step.get("env") or {}).items() if SECRET_REF.search(str(v))]
        for name in secret_vars:
            assert not re.search(rf"\${{?{name}\b", script), f"{where}: script reads ${name}"
        if secret_vars:
            programs = {words[0] for words in command_words(script)}
            assert programs <= SECRET_STEP_PROGRAMS, f"{where}: secrets passed to {programs}"


# ======================================================================== tests: reuse


def reusable() -> dict[str, Any]:
    return load_yaml(ROOT / REUSABLE_WORKFLOW)


def test_the_reusable_workflow_takes_the_configuration_and_environments_and_gives_digests() -> None:
    call = reusable()["on"]["workflow_call"]
    assert {"config", "deploy-environment", "github-environment"} <= set(call["inputs"])
    assert {"toolkit-repository", "toolkit-ref"} <= set(call["inputs"])
    assert call["inputs"]["config"]["default"] == "ci.yaml"
    outputs = {k: v["value"] for k, v in call["outputs"].items()}
    assert outputs["images"] == "${{ jobs.build.outputs.images }}"
    assert outputs["release-manifest"] == "${{ jobs.deploy.outputs.release-artifact }}"
    assert reusable()["env"]["CI_CONFIG"] == "${{ inputs.config }}", "config input unused"


def test_the_images_output_comes_from_the_step_that_built_them() -> None:
    build = reusable()["jobs"]["build"]
    ids = {s.get("id"): s for s in build["steps"]}
    for step_id in EXPR.findall(build["outputs"]["images"])[0].split("||"):
        step = ids[step_id.strip().split(".")[1]]
        [args] = ci_argv(step["run"], {})
        found = pipeline_step_of(args)
        assert found is not None
        assert found.name == "images", step_id


def test_the_release_manifest_artifact_is_the_one_the_deploy_job_keeps() -> None:
    deploy = reusable()["jobs"]["deploy"]
    kept = [s for s in deploy["steps"] if str(s.get("uses", "")).startswith("actions/upload-")]
    assert [s["with"]["name"] for s in kept] == [deploy["outputs"]["release-artifact"]]


def test_every_reusable_job_runs_ci_from_the_toolkit_at_the_requested_ref() -> None:
    """A caller in another repository has no ci/ nor Makefile: each job checks the toolkit out
    at toolkit-ref and sets `ci` up through the root action from that checkout."""
    for workflow in (REUSABLE_WORKFLOW, Path(".github/workflows/deploy.yml")):
        doc = load_yaml(ROOT / workflow)
        for job_id, job in doc["jobs"].items():
            steps = job["steps"]
            toolkit = [s for s in steps if (s.get("with") or {}).get("path") == ".ci-toolkit"]
            assert len(toolkit) == 1, f"{workflow}:{job_id}: no checkout of the toolkit"
            assert toolkit[0]["with"]["repository"] == "${{ env.TOOLKIT_REPOSITORY }}"
            assert toolkit[0]["with"]["ref"] == "${{ env.TOOLKIT_REF }}"
            setup = [s for s in steps if s.get("uses") == "./.ci-toolkit"]
            assert len(setup) == 1, f"{workflow}:{job_id}: ci is not set up from the toolkit"
            assert steps.index(toolkit[0]) < steps.index(setup[0])
            assert not [s for s in steps if s.get("uses") == "./.github/actions/setup-ci"]
        assert "inputs.toolkit-ref" in doc["env"]["TOOLKIT_REF"]
        assert "inputs.toolkit-repository" in doc["env"]["TOOLKIT_REPOSITORY"]


def test_the_root_action_installs_ci_from_its_own_files() -> None:
    action = load_yaml(ROOT / "action.yml")
    assert action["runs"]["using"] == "composite"
    scripts = "\n".join(str(s.get("run", "")) for s in action["runs"]["steps"])
    lock = 'install --require-hashes -r "$GITHUB_ACTION_PATH/requirements/ci.lock"'
    package = 'install --no-deps --no-build-isolation "$GITHUB_ACTION_PATH"'
    assert lock in scripts, "the dependencies do not come from the hash-locked file"
    assert package in scripts, "the package may pull unlocked dependencies or build backends"
    assert scripts.index(lock) < scripts.index(package)
    assert (ROOT / "requirements" / "ci.lock").is_file()
    assert {"tools", "python-version"} <= set(action["inputs"])


def adopter_workflow(tmp_path: Path) -> Path:
    """The workflow `ci init` writes, in a copy of .github, calling the local pipeline.yml."""
    from ci import scaffold

    root = tmp_path / "adopter"
    (root / "api").mkdir(parents=True)
    (root / "api" / "Dockerfile").write_text("FROM scratch\n")
    scaffold.init(root, toolkit="acme/toolkit", ref="v1")
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    written = (root / ".github/workflows/ci.yml").read_text()
    remote = "acme/toolkit/.github/workflows/pipeline.yml@v1"
    assert written.count(remote) == 1
    target = tmp_path / ".github/workflows/adopter.yml"
    target.write_text(written.replace(remote, "./.github/workflows/pipeline.yml"))
    return target.relative_to(tmp_path)


def test_the_workflow_ci_init_writes_calls_the_pipeline_as_it_declares(tmp_path: Path) -> None:
    workflow = adopter_workflow(tmp_path)
    job = load_yaml(tmp_path / workflow)["jobs"]["pipeline"]
    call = reusable()["on"]["workflow_call"]
    assert set(job["with"]) <= set(call["inputs"]), "an input pipeline.yml does not declare"
    assert set(job["secrets"]) <= set(call["secrets"]), "a secret pipeline.yml does not declare"
    # a called job gets no more than its caller grants: the union of what pipeline.yml asks
    needed = {k for j in reusable()["jobs"].values() for k in (j.get("permissions") or {})}
    assert "id-token" in needed  # keyless signing in the build job
    assert set(job["permissions"]) == needed, "the caller must grant what the jobs ask for"


@pytest.mark.parametrize("event", [PUSH_MAIN, PUSH_TAG, PULL_REQUEST], ids=["main", "tag", "pr"])
def test_an_adopters_run_is_gated_like_this_repositorys(event: Event, tmp_path: Path) -> None:
    workflow = adopter_workflow(tmp_path)
    runs = plan(workflow, event, tmp_path)
    assert gating_problems(runs) == []
    names = sorted(step.name for _, step in pipeline_steps(runs))
    deploys = event is PUSH_MAIN
    expected = ["chart", "config", "images"] + (["deploy", "smoke"] if deploys else [])
    assert names == sorted(expected)
    checkouts = [r for r in runs if r.given.get("path") == ".ci-toolkit"]
    assert checkouts
    assert {(r.given["repository"], r.given["ref"]) for r in checkouts} == {("acme/toolkit", "v1")}


def test_no_deploy_environment_means_no_deploy(tmp_path: Path) -> None:
    workflow = adopter_workflow(tmp_path)
    path = tmp_path / workflow
    path.write_text(
        path.read_text().replace("deploy-environment: staging", 'deploy-environment: ""')
    )
    names = {step.name for _, step in pipeline_steps(plan(workflow, PUSH_MAIN, tmp_path))}
    assert names == {"config", "images", "chart"}


def test_only_the_job_that_pushes_images_may_ask_for_an_oidc_token_and_it_signs_keyless() -> None:
    """Keyless cosign signing needs ``id-token: write``; no other job may hold it, and the
    push step must ask ``ci`` to sign with that identity, or prod's verification refuses.
    A job calling pipeline.yml may grant it too: a called job gets no more than its caller."""
    holders = []
    for path in workflow_files():
        for name, job in load_yaml(path).get("jobs", {}).items():
            permissions = job.get("permissions") or {}
            calls_pipeline = job.get("uses") == f"./{REUSABLE_WORKFLOW}"
            asks = isinstance(permissions, dict) and permissions.get("id-token") == "write"
            if asks and not calls_pipeline:
                holders.append((rel(path), name, job))
    assert [(p, n) for p, n, _ in holders] == [(".github/workflows/pipeline.yml", "build")]
    steps = holders[0][2]["steps"]
    push = next(s for s in steps if s.get("id") == "push")
    assert "ci pipeline step images" in push["run"]
    assert push["env"]["CI_SIGNING_MODE"] == "keyless"
    setup = next(s for s in steps if s.get("uses") == "./.ci-toolkit")
    assert "cosign" in setup["with"]["tools"].split()
