"""What every command shares: the ``Context`` (configuration and output folder) and common options.

Kept apart from ``ci/cli.py`` so the command modules never import the root group that
registers them (no cycle), and each option is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


class Context:
    """Options shared by every command: where the configuration is and where artifacts go."""

    def __init__(self, config_path: Path, out_dir: Path) -> None:
        self.config_path = config_path
        self.out_dir = out_dir
        self._config: Any = None

    @property
    def config(self) -> Any:
        """The validated configuration, loaded on first use (``--help`` never needs it)."""
        if self._config is None:
            from ci import config

            self._config = config.load(self.config_path)
        return self._config

    def global_args(self) -> tuple[str, ...]:
        """The root options again, for a step that runs ``ci`` as a child process."""
        return ("--config", str(self.config_path), "--out-dir", str(self.out_dir))


pass_ctx = click.make_pass_decorator(Context)

HELM_MAJOR_OPTION = click.option(
    "--helm-major",
    type=click.Choice(["3", "4"]),
    default=None,
    envvar="CI_HELM_MAJOR",
    help="Helm major to use (default: CI_HELM_MAJOR, else 4; 3 is supported until 2027-02-10).",
)
