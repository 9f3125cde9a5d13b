"""The GitHub Actions workflows: they call only real `ci` commands, follow the pipeline order that
`make ci-local` runs, and keep the practices reviewers look for.

The workflows are interpreted, not run: jobs in dependency order, `if:` conditions and `${{ }}`
expressions evaluated for a given event, reusable workflows and the local composite action
expanded with their inputs, shell variables from `env:` substituted into the `ci` command lines.
What comes out is the sequence of `ci` commands a real run would execute, which is compared with
``ci.pipeline.push_pipeline`` and checked against the click command tree.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ci import pipeline
from ci.cli import main

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
ACTIONS = GITHUB / "actions"
PUSH_WORKFLOW = WORKFLOWS / "ci.yml"
PROD_WORKFLOW = WORKFLOWS / "deploy-prod.yml"

#: Commands that prepare a job (tools, registry login) rather than being pipeline steps.
SETUP_COMMANDS = {("tools", "install"), ("images", "login"), ("doctor",)}

FULL_SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)\s*(?:#\s*(?P<comment>.*))?$")
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}$")


# ------------------------------------------------------------------------ loading files


def load_yaml(path: Path) -> dict[str, Any]:
    """A workflow or action file; PyYAML reads the `on:` key as True, which is put back."""
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path}: expected a mapping at the top"
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def action_files() -> list[Path]:
    return sorted(ACTIONS.glob("*/action.yml")) + sorted(ACTIONS.glob("*/action.yaml"))


def all_files() -> list[Path]:
    return workflow_files() + action_files()


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ------------------------------------------------------------------------ expressions


class Expression:
    """A small evaluator of GitHub Actions expressions: literals, context paths, ``!``,
    comparisons, ``&&``/``||`` (which return operands, as in Actions) and the functions the
    workflows use. Type coercion for ``==`` follows the documented rules (null and '' are 0)."""

    TOKEN = re.compile(
        r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|"
        r"(?P<op>==|!=|<=|>=|&&|\|\||[!<>(),\[\]])|(?P<name>[A-Za-z_][A-Za-z0-9_.\-*]*))"
    )

    def __init__(self, text: str, contexts: Mapping[str, Any]) -> None:
        self.text = text
        self.contexts = contexts
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text.rstrip()):
            m = self.TOKEN.match(text, pos)
            assert m is not None, f"cannot parse expression {text!r} at {pos}"
            assert m.end() > pos, f"cannot parse expression {text!r} at {pos}"
            kind = m.lastgroup
            assert kind is not None
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def evaluate(self) -> Any:
        value = self._or()
        assert self.pos == len(self.tokens), f"unexpected text in expression {self.text!r}"
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        assert self.pos < len(self.tokens), f"expression {self.text!r} ends early"
        token = self.tokens[self.pos]
        assert expected is None or token[1] == expected, f"expected {expected} in {self.text!r}"
        self.pos += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._cmp()
        while self._peek() == "&&":
            self._take()
            right = self._cmp()
            value = right if truthy(value) else value
        return value

    def _cmp(self) -> Any:
        value = self._unary()
        op = self._peek()
        if op in ("==", "!=", "<", "<=", ">", ">="):
            self._take()
            right = self._unary()
            if op in ("==", "!="):
                return loose_equal(value, right) == (op == "==")
            a, b = to_number(value), to_number(right)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        assert kind == "name", f"unexpected {text!r} in {self.text!r}"
        if self._peek() == "(":
            return self._call(text)
        return self._path(text)

    def _call(self, name: str) -> Any:
        self._take("(")
        args = []
        while self._peek() != ")":
            args.append(self._or())
            if self._peek() == ",":
                self._take()
        self._take(")")
        return call_function(name, args)

    def _path(self, text: str) -> Any:
        literals = {"true": True, "false": False, "null": None}
        if text in literals:
            return literals[text]
        head, *rest = text.split(".")
        assert head in self.contexts, f"unknown context {head!r} in {self.text!r}"
        value: Any = self.contexts[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


def to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text == "":
        return 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def loose_equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if type(a) is type(b) and not isinstance(a, str):
        return bool(a == b)
    return to_number(a) == to_number(b)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, 0.0, "")


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def call_function(name: str, args: list[Any]) -> Any:
    status = {"success": True, "always": True, "failure": False, "cancelled": False}
    if name in status:
        return status[name]
    if name == "format":
        template, *values = args
        return re.sub(r"\{(\d+)\}", lambda m: as_text(values[int(m.group(1))]), template)
    if name == "startsWith":
        return as_text(args[0]).casefold().startswith(as_text(args[1]).casefold())
    if name == "endsWith":
        return as_text(args[0]).casefold().endswith(as_text(args[1]).casefold())
    if name == "contains":
        return as_text(args[1]).casefold() in as_text(args[0]).casefold()
    if name == "hashFiles":
        return "0" * 64
    raise AssertionError(f"expression function {name}() is not known to this test")


EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.S)


def evaluate_value(value: Any, contexts: Mapping[str, Any]) -> Any:
    """A YAML value with ``${{ }}``: a lone expression keeps its type, else text is interpolated."""
    if not isinstance(value, str):
        return value
    whole = EXPR.fullmatch(value.strip())
    if whole:
        return Expression(whole.group(1), contexts).evaluate()
    return EXPR.sub(lambda m: as_text(Expression(m.group(1), contexts).evaluate()), value)


def condition(value: Any, contexts: Mapping[str, Any]) -> bool:
    """An ``if:`` (with or without ``${{ }}``); absent means success()."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    whole = EXPR.fullmatch(text)
    return truthy(Expression(whole.group(1) if whole else text, contexts).evaluate())


# ------------------------------------------------------------------------ shell scripts

SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "time"}
SHELL_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def simple_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a bash script, split at ; & | ( ) and newlines; the target of a
    redirection (> >> < <<<) is dropped, so it is never taken for a command."""
    script = script.replace("\\\n", " ")
    for line in script.splitlines():
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


def ci_argv(script: str, env: Mapping[str, str]) -> list[list[str]]:
    """The arguments of every `ci` command in ``script``, with $VARS from ``env`` filled in."""

    def expand(word: str) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group("braced") or m.group("bare")
            return env[name] if name in env else m.group(0)

        return SHELL_VAR.sub(sub, word)

    found = []
    for words in command_words(script):
        if words[0] == "ci" or words[0].endswith("/bin/ci"):
            found.append([expand(w) for w in words[1:]])
    return found


# ------------------------------------------------------------------------ the click tree


def check_ci_args(args: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Parse ``args`` with the real click tree: the command path and the leaf's options.

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


# ------------------------------------------------------------------------ the interpreter


@dataclass(frozen=True)
class CiCall:
    """One `ci` command a run would execute, and where: file, job and its GitHub environment."""

    args: tuple[str, ...]
    where: str
    environment: str | None
    env_names: frozenset[str]

    @property
    def command(self) -> tuple[str, ...]:
        return check_ci_args(list(self.args))[0]


@dataclass(frozen=True)
class ArtifactStep:
    """An upload-artifact or download-artifact step as a run would execute it."""

    kind: str  # "upload" or "download"
    name: str
    path: str
    run_id: str
    where: str


@dataclass
class Run:
    calls: list[CiCall] = field(default_factory=list)
    artifacts: list[ArtifactStep] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # "file:job" -> success | skipped


@dataclass(frozen=True)
class Event:
    """The ``github`` context of a run, inputs of a dispatch, and outputs of shell steps."""

    github: Mapping[str, Any]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    step_outputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def github_context(event_name: str, ref: str, **extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "event_name": event_name,
        "ref": ref,
        "ref_name": ref.rsplit("/", 1)[-1],
        "sha": "1" * 40,
        "run_id": "1001",
        "repository": "example/schedule-tracker",
        "repository_owner": "example",
        "actor": "someone",
        "token": "***github-token***",
        "workspace": "/home/runner/work/schedule-tracker",
        "event": {"repository": {"default_branch": "main"}},
    }
    ctx.update(extra)
    return ctx


PUSH_MAIN = Event(github_context("push", "refs/heads/main"))
PUSH_TAG = Event(github_context("push", "refs/tags/v1.2.0"))
PULL_REQUEST = Event(github_context("pull_request", "refs/pull/7/merge", head_ref="feature"))
PROD_SHA = "2" * 40
PROD_RUN = "4242"


def prod_dispatch(diff_only: bool) -> Event:
    return Event(
        github_context("workflow_dispatch", "refs/heads/main"),
        inputs={"version": "v1.2.0", "diff-only": diff_only},
        step_outputs={"resolve.find": {"sha": PROD_SHA, "run-id": PROD_RUN}},
    )


def topological_jobs(jobs: Mapping[str, Any]) -> list[str]:
    """Jobs in an order a run could execute them: needs first, file order otherwise."""
    order: list[str] = []
    pending = list(jobs)
    while pending:
        for job_id in pending:
            needs = jobs[job_id].get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if all(n in order for n in needs):
                order.append(job_id)
                pending.remove(job_id)
                break
        else:
            raise AssertionError(f"job needs form a cycle or name unknown jobs: {pending}")
    return order


def local_path(uses: str) -> Path:
    assert uses.startswith("./"), uses
    return ROOT / uses[2:]


def input_values(declared: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs with defaults filled in; an unknown or missing required input fails the test."""
    declared = declared or {}
    unknown = set(given) - set(declared)
    assert not unknown, f"inputs {sorted(unknown)} are not declared (declared: {sorted(declared)})"
    values: dict[str, Any] = {}
    for name, declaration in declared.items():
        spec = declaration or {}
        if name in given:
            values[name] = given[name]
        else:
            assert not spec.get("required"), f"required input {name!r} is not given"
            values[name] = spec.get("default")
    return values


def interpret_workflow(
    path: Path,
    event: Event,
    inputs: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    run: Run | None = None,
) -> Run:
    """Walk ``path`` for ``event``; reusable workflows are expanded in place."""
    doc = load_yaml(path)
    run = run if run is not None else Run()
    on = doc["on"]
    call_inputs = (on.get("workflow_call") or {}).get("inputs") if isinstance(on, dict) else None
    dispatch = (on.get("workflow_dispatch") or {}) if isinstance(on, dict) else {}
    if inputs is None:
        inputs = input_values(dispatch.get("inputs"), event.inputs)
    elif call_inputs is not None:
        inputs = input_values(call_inputs, inputs)
    contexts: dict[str, Any] = {
        "github": event.github,
        "inputs": inputs,
        "vars": {},
        "secrets": dict(secrets or {}),
        "runner": {"os": "Linux", "temp": "/tmp"},
    }
    wf_env = {k: as_text(evaluate_value(v, contexts)) for k, v in (doc.get("env") or {}).items()}
    results: dict[str, str] = {}
    outputs: dict[str, dict[str, str]] = {}
    for job_id in topological_jobs(doc["jobs"]):
        job = doc["jobs"][job_id]
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        ctx = dict(contexts)
        ctx["needs"] = {n: {"result": results[n], "outputs": outputs.get(n, {})} for n in needs}
        ok = all(results[n] == "success" for n in needs)
        where = f"{rel(path)}:{job_id}"
        if not (ok and condition(job.get("if"), ctx)):
            results[job_id] = run.jobs[where] = "skipped"
            continue
        if "uses" in job:
            given = {k: evaluate_value(v, ctx) for k, v in (job.get("with") or {}).items()}
            passed = {
                k: as_text(evaluate_value(v, ctx)) for k, v in (job.get("secrets") or {}).items()
            }
            interpret_workflow(local_path(job["uses"]), event, given, passed, run)
        else:
            scope = JobScope(event, run, job_id, where, None)
            outputs[job_id] = interpret_job(scope, job, {**ctx, "env": wf_env})
        results[job_id] = run.jobs[where] = "success"
    return run


@dataclass
class JobScope:
    """What the steps of one job share: the run being recorded, the job and its environment."""

    event: Event
    run: Run
    job_id: str
    where: str
    environment: str | None


def interpret_job(scope: JobScope, job: Mapping[str, Any], contexts: Mapping[str, Any]) -> Any:
    """Run the job's steps; return its evaluated ``outputs``."""
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment:
        scope.environment = as_text(evaluate_value(environment, contexts))
    ctx = dict(contexts)
    env = dict(ctx["env"])
    env.update({k: as_text(evaluate_value(v, ctx)) for k, v in (job.get("env") or {}).items()})
    ctx.update(env=env, steps={})
    interpret_steps(scope, job["steps"], ctx, env)
    return {k: as_text(evaluate_value(v, ctx)) for k, v in (job.get("outputs") or {}).items()}


def interpret_steps(
    scope: JobScope, steps: list[Mapping[str, Any]], ctx: dict[str, Any], env: Mapping[str, str]
) -> None:
    for index, step in enumerate(steps):
        if not condition(step.get("if"), ctx):
            continue
        step_env = {**env}
        step_env.update(
            {k: as_text(evaluate_value(v, ctx)) for k, v in (step.get("env") or {}).items()}
        )
        label = f"{scope.where} step {step.get('name') or step.get('id') or index}"
        if "run" in step:
            script = evaluate_value(step["run"], ctx)
            names = frozenset(step.get("env") or {})
            for argv in ci_argv(script, step_env):
                scope.run.calls.append(CiCall(tuple(argv), label, scope.environment, names))
        elif str(step.get("uses", "")).startswith("./"):
            interpret_action(scope, step, ctx, step_env)
        elif "uses" in step:
            record_artifact(step, ctx, scope.run, label)
        if step.get("id"):
            outputs = scope.event.step_outputs.get(f"{scope.job_id}.{step['id']}", {})
            ctx["steps"][step["id"]] = {"outputs": dict(outputs), "outcome": "success"}


def interpret_action(
    scope: JobScope, step: Mapping[str, Any], ctx: Mapping[str, Any], env: Mapping[str, str]
) -> None:
    """A local composite action: its steps, with its inputs from the step's ``with:``."""
    action_dir = local_path(step["uses"])
    doc = load_yaml(action_dir / "action.yml")
    assert doc["runs"]["using"] == "composite", f"{action_dir}: expected a composite action"
    given = {k: evaluate_value(v, ctx) for k, v in (step.get("with") or {}).items()}
    inner = {**ctx, "inputs": input_values(doc.get("inputs"), given), "steps": {}}
    interpret_steps(scope, doc["runs"]["steps"], inner, env)


def record_artifact(step: Mapping[str, Any], ctx: Mapping[str, Any], run: Run, where: str) -> None:
    action = str(step["uses"]).split("@")[0]
    kind = {"actions/upload-artifact": "upload", "actions/download-artifact": "download"}.get(
        action
    )
    if kind is None:
        return
    given = {k: as_text(evaluate_value(v, ctx)) for k, v in (step.get("with") or {}).items()}
    run_id = given.get("run-id") or as_text(ctx["github"]["run_id"])
    run.artifacts.append(
        ArtifactStep(kind, given.get("name", ""), given.get("path", ""), run_id, where)
    )


def pipeline_commands(run: Run) -> list[tuple[str, ...]]:
    """The `ci` argument lists of a run, without the setup commands."""
    return [c.args for c in run.calls if c.command not in SETUP_COMMANDS]


# ======================================================================== tests: the CLI


def every_ci_call() -> list[tuple[str, CiCall]]:
    """Every `ci` line in every run step of every workflow and action, with variables as-is."""
    found = []
    for path in all_files():
        doc = load_yaml(path)
        steps: list[tuple[str, Mapping[str, Any]]] = []
        if "jobs" in doc:
            for job_id, job in doc["jobs"].items():
                steps += [(f"{rel(path)}:{job_id}", s) for s in job.get("steps", [])]
        else:
            steps += [(rel(path), s) for s in doc["runs"].get("steps", [])]
        for where, step in steps:
            if "run" in step:
                script = EXPR.sub("EXPR", step["run"])
                for argv in ci_argv(script, {}):
                    found.append((where, CiCall(tuple(argv), where, None, frozenset())))
    return found


def test_the_workflows_and_the_setup_action_exist() -> None:
    names = {p.name for p in workflow_files()}
    assert {"ci.yml", "deploy-prod.yml", "deploy.yml"} <= names
    assert (ACTIONS / "setup-ci" / "action.yml").is_file()


def test_the_workflows_call_ci_for_every_pipeline_step() -> None:
    commands = {c.command for _, c in every_ci_call()}
    for step in pipeline.push_pipeline("staging"):
        assert check_ci_args(list(step.args))[0] in commands, step.command()


@pytest.mark.parametrize(
    ("where", "call"),
    every_ci_call(),
    ids=[f"{w}:ci {' '.join(c.args)}" for w, c in every_ci_call()],
)
def test_every_ci_invocation_names_a_real_command_and_options(where: str, call: CiCall) -> None:
    check_ci_args(list(call.args))


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
    assert check_ci_args(["-c", "x.yaml", "images", "build", "--push", "--only", "backend"])[0] == (
        "images",
        "build",
    )


def test_ci_lines_are_found_through_continuations_and_operators() -> None:
    script = 'set -e\nci images build \\\n  --push --only "$NAME"\nmake x && ci chart check # c\n'
    assert ci_argv(script, {"NAME": "backend"}) == [
        ["images", "build", "--push", "--only", "backend"],
        ["chart", "check"],
    ]
    assert ci_argv('echo "ci images build"; FOO=1 ci doctor', {}) == [["doctor"]]


# ======================================================================== tests: the order


def ci_local_env() -> str:
    """The environment `make ci-local` deploys to: its `ci pipeline run` line, else the default."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ci-local:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    runs = [line for line in recipe if re.search(r"\$\(CI\)\s+pipeline\s+run\b", line)]
    assert runs, f"the Makefile's ci-local target does not run `$(CI) pipeline run`: {recipe}"
    argv = shlex.split(runs[0].split("pipeline", 1)[1])[1:]
    _, opts = check_ci_args(["pipeline", "run", *argv])
    if "env" in opts:
        return str(opts["env"])
    run_cmd = main.commands["pipeline"].commands["run"]  # type: ignore[attr-defined]
    return str(next(p.default for p in run_cmd.params if p.name == "env"))


def test_a_push_to_the_default_branch_runs_the_pipeline_in_order() -> None:
    run = interpret_workflow(PUSH_WORKFLOW, PUSH_MAIN)
    expected = [s.args for s in pipeline.push_pipeline("staging")]
    assert pipeline_commands(run) == expected


def test_make_ci_local_runs_the_same_sequence_as_the_push_workflow() -> None:
    env = ci_local_env()
    run = interpret_workflow(PUSH_WORKFLOW, PUSH_MAIN)
    assert pipeline_commands(run) == [s.args for s in pipeline.push_pipeline(env)]


def test_a_pull_request_builds_and_checks_without_pushing_or_deploying() -> None:
    run = interpret_workflow(PUSH_WORKFLOW, PULL_REQUEST)
    commands = pipeline_commands(run)
    assert ("images", "build") in commands
    assert ("chart", "check") in commands
    assert all("--push" not in c for c in commands)
    assert not [c for c in run.calls if c.command in {("images", "login"), ("deploy",), ("smoke",)}]


def test_a_tag_pushes_images_but_does_not_deploy() -> None:
    run = interpret_workflow(PUSH_WORKFLOW, PUSH_TAG)
    commands = pipeline_commands(run)
    assert ("images", "build", "--push") in commands
    assert ("images", "login") in [c.args for c in run.calls]
    assert not [c for c in run.calls if c.command in {("deploy",), ("smoke",)}]


def test_the_registry_login_comes_before_the_push() -> None:
    args = [c.args for c in interpret_workflow(PUSH_WORKFLOW, PUSH_MAIN).calls]
    assert args.index(("images", "login")) < args.index(("images", "build", "--push"))


def test_the_staging_deploy_uses_the_digests_the_build_uploaded() -> None:
    run = interpret_workflow(PUSH_WORKFLOW, PUSH_MAIN)
    uploads = {a.name: a for a in run.artifacts if a.kind == "upload"}
    downloads = [a for a in run.artifacts if a.kind == "download"]
    assert uploads["images"].path == ".ci-out/images.json"
    assert [(d.name, d.path, d.run_id) for d in downloads] == [("images", ".ci-out", "1001")]
    assert "release-staging" in uploads, "the staging deploy keeps its release manifest"


def release_manifest_arg(call: CiCall) -> str:
    args = list(call.args)
    return args[args.index("--release-manifest") + 1]


def test_prod_deploys_the_release_manifest_staging_tested_without_rebuilding() -> None:
    staging = interpret_workflow(PUSH_WORKFLOW, PUSH_MAIN)
    upload = next(a for a in staging.artifacts if a.name == "release-staging")
    run = interpret_workflow(PROD_WORKFLOW, prod_dispatch(diff_only=False))
    assert pipeline_commands(run) == [
        ("deploy", "--env", "prod", "--release-manifest", "release/release.json"),
        ("smoke", "--env", "prod"),
    ]
    assert not [c for c in run.calls if c.command == ("images", "build")]
    download = next(a for a in run.artifacts if a.kind == "download")
    assert (download.name, download.run_id) == (upload.name, PROD_RUN)
    manifest = release_manifest_arg(run.calls[-2])
    assert manifest == f"{download.path}/{Path(upload.path).name}"


def test_prod_diff_only_shows_the_diff_and_changes_nothing() -> None:
    run = interpret_workflow(PROD_WORKFLOW, prod_dispatch(diff_only=True))
    assert pipeline_commands(run) == [
        ("deploy", "--env", "prod", "--release-manifest", "release/release.json", "--diff-only"),
    ]
    assert not [a for a in run.artifacts if a.kind == "upload"]


def test_prod_runs_in_the_production_environment_and_staging_in_staging() -> None:
    prod = interpret_workflow(PROD_WORKFLOW, prod_dispatch(diff_only=False)).calls
    staging = interpret_workflow(PUSH_WORKFLOW, PUSH_MAIN).calls
    for call in [*prod, *staging]:
        args = list(call.args)
        if call.command in {("deploy",), ("smoke",)}:
            env = args[args.index("--env") + 1]
            expected = {"prod": "production", "staging": "staging"}[env]
            assert call.environment == expected, f"{call.where}: runs in {call.environment}"


def test_the_prod_workflow_takes_a_version_and_a_diff_only_switch() -> None:
    inputs = load_yaml(PROD_WORKFLOW)["on"]["workflow_dispatch"]["inputs"]
    assert inputs["version"]["required"] is True
    assert inputs["diff-only"]["type"] == "boolean"
    assert inputs["diff-only"]["default"] is False


# ======================================================================== tests: practices


def jobs_of(path: Path) -> dict[str, Mapping[str, Any]]:
    return dict(load_yaml(path).get("jobs", {}))


def all_jobs() -> list[tuple[str, Mapping[str, Any]]]:
    return [(f"{rel(p)}:{j}", job) for p in workflow_files() for j, job in jobs_of(p).items()]


@pytest.mark.parametrize(
    ("where", "job"), all_jobs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_job_has_a_timeout_and_its_own_permissions(
    where: str, job: Mapping[str, Any]
) -> None:
    assert "permissions" in job, f"{where}: no permissions block"
    if "runs-on" in job:  # a job calling a reusable workflow takes the called jobs' timeouts
        timeout = job.get("timeout-minutes")
        assert isinstance(timeout, int), f"{where}: no timeout-minutes"
        assert 0 < timeout <= 60, f"{where}: timeout-minutes {timeout}"


@pytest.mark.parametrize("path", workflow_files(), ids=rel)
def test_workflows_grant_nothing_by_default(path: Path) -> None:
    assert load_yaml(path).get("permissions") == {}, f"{rel(path)}: expected `permissions: {{}}`"


def test_write_permissions_only_where_images_are_pushed() -> None:
    for path in workflow_files():
        for job_id, job in jobs_of(path).items():
            perms = job.get("permissions") or {}
            assert isinstance(perms, dict), f"{rel(path)}:{job_id}: permissions {perms!r}"
            assert "id-token" not in perms, f"{rel(path)}:{job_id}: id-token is not needed"
            writes = {k for k, v in perms.items() if v == "write"}
            if not writes:
                continue
            assert writes == {"packages"}, f"{rel(path)}:{job_id}: writes {writes}"
            runs = " ".join(str(s.get("run", "")) for s in job.get("steps", []))
            assert "ci images build --push" in runs, f"{rel(path)}:{job_id}: pushes nothing"


def test_deploys_are_serialised_per_environment_and_never_cancelled() -> None:
    deploy_jobs = [(w, j) for w, j in all_jobs() if "environment" in j]
    assert deploy_jobs, "no job runs in a GitHub environment"
    for where, job in deploy_jobs:
        group = job.get("concurrency", {})
        assert isinstance(group, dict), f"{where}: concurrency must be a mapping"
        assert "environment" in str(group.get("group", "")), f"{where}: group per environment"
        assert group.get("cancel-in-progress") is False, f"{where}: cancel-in-progress: false"
    prod = load_yaml(PROD_WORKFLOW)["concurrency"]
    assert prod["cancel-in-progress"] is False


def test_caller_and_called_concurrency_groups_never_collide() -> None:
    """A caller holding the same group as the job it calls would wait for itself forever."""
    called = {
        str(j.get("concurrency", {}).get("group"))
        for _, j in jobs_of(WORKFLOWS / "deploy.yml").items()
    }
    for path in (PUSH_WORKFLOW, PROD_WORKFLOW):
        top = load_yaml(path).get("concurrency", {}).get("group")
        assert str(top) not in called


def uses_lines() -> list[tuple[str, str, str | None]]:
    found = []
    for path in all_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = USES_LINE.match(line)
            if m:
                found.append((f"{rel(path)}:{number}", m.group("ref"), m.group("comment")))
    return found


@pytest.mark.parametrize(("where", "ref", "comment"), uses_lines(), ids=str)
def test_actions_are_pinned_to_full_commit_shas_with_the_version(
    where: str, ref: str, comment: str | None
) -> None:
    if ref.startswith("./"):
        assert local_path(ref).exists(), f"{where}: {ref} does not exist"
        return
    assert FULL_SHA_PIN.match(ref), f"{where}: {ref} is not pinned to a full commit SHA"
    assert comment, f"{where}: no `# vX.Y.Z` comment after the SHA"
    assert VERSION_COMMENT.match(comment.strip()), f"{where}: {comment!r} is not `vX.Y.Z`"


def test_one_action_version_is_one_commit_everywhere() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    for _, ref, comment in uses_lines():
        if "@" in ref:
            name, sha = ref.split("@")
            pins.setdefault(name, set()).add((sha, (comment or "").strip()))
    for name, seen in pins.items():
        assert len(seen) == 1, f"{name} is pinned differently: {sorted(seen)}"


def checkout_steps() -> Iterator[tuple[str, Mapping[str, Any]]]:
    for where, job in all_jobs():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                yield where, step


def test_checkout_does_not_keep_the_token() -> None:
    steps = list(checkout_steps())
    assert steps
    for where, step in steps:
        assert (step.get("with") or {}).get("persist-credentials") is False, where


def all_steps() -> Iterator[tuple[str, Mapping[str, Any]]]:
    for where, job in all_jobs():
        for step in job.get("steps", []):
            yield where, step
    for path in action_files():
        for step in load_yaml(path)["runs"]["steps"]:
            yield rel(path), step


SECRET_REF = re.compile(r"secrets\.|github\.token|GITHUB_TOKEN")
#: What a step holding a secret may run: `ci`, the GitHub CLI, and shell builtins.
SECRET_STEP_PROGRAMS = {"ci", "gh", "echo", "exit", "[["}


def test_secrets_reach_only_the_steps_that_need_them_and_are_never_printed() -> None:
    for path in all_files():
        doc = load_yaml(path)
        assert not SECRET_REF.search(yaml.safe_dump(doc.get("env", {}))), rel(path)
        for job_id, job in doc.get("jobs", {}).items():
            assert not SECRET_REF.search(yaml.safe_dump(job.get("env", {}))), f"{job_id}: job env"
    for where, step in all_steps():
        script = str(step.get("run", ""))
        assert not SECRET_REF.search(script), f"{where}: a secret expression in a run script"
        assert not re.search(r"\bset\s+-\w*x|\bprintenv\b|^\s*env\s*$", script, re.M), where
        secret_vars = [k for k, v in (step.get("env") or {}).items() if SECRET_REF.search(str(v))]
        for name in secret_vars:
            assert not re.search(rf"\${{?{name}\b", script), f"{where}: script reads ${name}"
        if secret_vars:
            programs = {words[0] for words in command_words(script)}
            assert programs <= SECRET_STEP_PROGRAMS, f"{where}: secrets passed to {programs}"


def test_kubeconfigs_come_from_the_secrets_ci_yaml_names() -> None:
    from ci import config

    cfg = config.load(ROOT / "ci.yaml")
    for env in ("staging", "prod"):
        name = cfg.environments[env].kubeconfig_env
        event = PUSH_MAIN if env == "staging" else prod_dispatch(diff_only=False)
        path = PUSH_WORKFLOW if env == "staging" else PROD_WORKFLOW
        calls = [c for c in interpret_workflow(path, event).calls if c.command == ("deploy",)]
        assert calls
        for call in calls:
            assert name in call.env_names, f"{call.where}: {name} is not passed to ci deploy"


# ======================================================================== tests: Actions output


def actions_env(tmp_path: Path) -> dict[str, str]:
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    output.touch()
    summary.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary))
    return env


def run_ci(
    args: list[str], env: Mapping[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci", *args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_a_bad_configuration_is_annotated_at_its_file_and_line(tmp_path: Path) -> None:
    bad = ROOT / "tests" / "data" / "config" / "bad" / "timeout-bad.yaml"
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "10 minutes" in text)
    result = run_ci(["-c", str(bad), "config", "validate"], actions_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"::error file={bad},line={line}::environments.staging.timeout: " in result.stdout


def test_the_pipeline_under_actions_writes_its_timing_chart_to_the_job_summary(
    tmp_path: Path,
) -> None:
    env = actions_env(tmp_path)
    result = run_ci(["-o", str(tmp_path / "out"), "pipeline", "run", "--until", "config"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> [config] ci config validate" in result.stdout
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## Pipeline :white_check_mark: passed\n")
    assert "```mermaid\ngantt\n" in summary
    assert re.search(r"^  config \(\d+\.\ds\) : \d+, \d+$", summary, re.M), summary


def test_a_failing_step_is_marked_in_the_summary_and_fails_the_pipeline(tmp_path: Path) -> None:
    env = actions_env(tmp_path)
    bad = ROOT / "tests" / "data" / "config" / "bad" / "timeout-bad.yaml"
    result = run_ci(["-c", str(bad), "pipeline", "run", "--until", "images"], env)
    assert result.returncode == 1
    assert "::error file=" in result.stdout
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert re.search(r"^  config \(\d+\.\ds\) : crit, ", summary, re.M), summary
    assert "images (" not in summary
