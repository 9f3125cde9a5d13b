"""The JSON files steps leave in the output folder for later steps and jobs to read.

Why one writer: ``images.json``, ``release.json``, ``smoke.json``, ``findings.json`` and
``pipeline.json`` are read by later steps, other jobs and people while a run may still be
writing them; each is written to a temporary file beside it and renamed into place, so a
reader (or a crash half-way) never leaves half a file. Every artifact has the same layout
(two-space indent, a final newline), so diffs between runs stay readable.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ci.errors import ConfigError


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (creating its folder); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the artifact from other readers
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path, *, hint: str) -> Any:
    """Read a JSON artifact; a missing or broken file is a one-line error naming ``hint``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found ({hint})") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read JSON: {exc}") from None
