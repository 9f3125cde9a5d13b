"""Output for people and for GitHub Actions, in one place.

Under Actions (``GITHUB_ACTIONS=true``) output uses workflow commands: collapsible groups,
annotations with file and line, outputs through ``GITHUB_OUTPUT``, a Markdown job summary
through ``GITHUB_STEP_SUMMARY`` and ``::add-mask::`` for secrets. Elsewhere the same calls
print plain readable text. Secret values registered with ``mask`` are also redacted from
everything printed here, so a token never reaches a local terminal log either.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from ci.errors import Location

_masked: set[str] = set()


def is_actions() -> bool:
    """True when running as a GitHub Actions step."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _out(stream: TextIO | None = None) -> TextIO:
    return stream if stream is not None else sys.stdout


def _err(stream: TextIO | None = None) -> TextIO:
    return stream if stream is not None else sys.stderr


# ----------------------------------------------------------------------------- escaping


def escape_data(text: str) -> str:
    """Escape a workflow command's message the way the Actions runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command property value (file, title)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def redact(text: str) -> str:
    """Replace every masked value in ``text`` with ``***``."""
    for value in sorted(_masked, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# ----------------------------------------------------------------------------- masking


def mask(value: str, stream: TextIO | None = None) -> None:
    """Never show ``value``: tell Actions to mask it and redact it from our own output.

    Each line is masked separately because the runner matches masks line by line.
    """
    for raw in [value, *value.splitlines()]:
        part = raw.strip()
        if len(part) < 3 or part in _masked:
            continue
        _masked.add(part)
        if is_actions():
            print(f"::add-mask::{escape_data(part)}", file=_out(stream), flush=True)


# ----------------------------------------------------------------------------- plain output


def echo(text: str = "", stream: TextIO | None = None) -> None:
    """Print a line of normal output (secrets redacted)."""
    print(redact(text), file=_out(stream), flush=True)


def detail(text: str, stream: TextIO | None = None) -> None:
    """Print supporting output for an error (captured stderr, logs) on stderr, indented."""
    for line in redact(text).splitlines():
        print(f"  {line}", file=_err(stream), flush=True)


# ----------------------------------------------------------------------------- annotations


def _annotate(
    level: str, message: str, location: Location | None, title: str | None, stream: TextIO | None
) -> None:
    message = redact(message)
    if is_actions():
        props = []
        if location is not None:
            props.append(f"file={escape_property(location.file)}")
            if location.line is not None:
                props.append(f"line={location.line}")
            if location.column is not None:
                props.append(f"col={location.column}")
        if title:
            props.append(f"title={escape_property(title)}")
        head = f"::{level} {','.join(props)}" if props else f"::{level}"
        print(f"{head}::{escape_data(message)}", file=_out(stream), flush=True)
        return
    where = f"{location}: " if location is not None else ""
    label = f"[{title}] " if title else ""
    print(f"{level}: {where}{label}{message}", file=_err(stream), flush=True)


def error(
    message: str,
    *,
    location: Location | None = None,
    title: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Report an error: an annotation under Actions, ``error: file:line: message`` elsewhere."""
    _annotate("error", message, location, title, stream)


def warning(
    message: str,
    *,
    location: Location | None = None,
    title: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Report a warning, annotated like ``error``."""
    _annotate("warning", message, location, title, stream)


# ----------------------------------------------------------------------------- groups


@contextmanager
def group(title: str, stream: TextIO | None = None) -> Iterator[None]:
    """A collapsible log group under Actions; a ``==> title`` header elsewhere."""
    out = _out(stream)
    if is_actions():
        print(f"::group::{escape_data(redact(title))}", file=out, flush=True)
        try:
            yield
        finally:
            print("::endgroup::", file=out, flush=True)
    else:
        print(f"==> {redact(title)}", file=out, flush=True)
        yield


@contextmanager
def untrusted_output(stream: TextIO | None = None) -> Iterator[None]:
    """Stop the runner from executing workflow commands found in a tool's output.

    Build and deploy logs contain text we do not control; ``::stop-commands::`` with a
    random token makes the runner treat every line as plain text until it is resumed.
    """
    if not is_actions():
        yield
        return
    token = secrets.token_hex(16)
    out = _out(stream)
    print(f"::stop-commands::{token}", file=out, flush=True)
    try:
        yield
    finally:
        print(f"::{token}::", file=out, flush=True)


# ----------------------------------------------------------------------------- files


def set_output(name: str, value: str) -> bool:
    """Set a step output through ``GITHUB_OUTPUT``; return False when not under Actions.

    A random delimiter makes multi-line values safe: a value can never end the block early.
    """
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        return False
    delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return True


def add_summary(markdown: str) -> bool:
    """Append Markdown to the job summary; return False when not under Actions."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    text = redact(markdown)
    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
    return True


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; pipes in cells are escaped."""

    def cell(value: str) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table for terminals."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*(str(c) for c in row)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"
