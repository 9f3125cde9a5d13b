"""How to reach an environment's cluster: which kubeconfig file and context.

Why a context manager: in GitHub Actions the kubeconfig arrives as a secret's content, not a
path; it must be written to a private file for the client and Helm, and removed afterwards.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ci.config import Environment
from ci.errors import ConfigError


@dataclass(frozen=True)
class Access:
    """How to reach an environment's cluster: kubeconfig file (None: the default) and context."""

    kubeconfig: str | None
    context: str | None
    source: str


@contextmanager
def access(env: Environment, environ: Mapping[str, str] | None = None) -> Iterator[Access]:
    """The environment's kubeconfig; a variable's content goes to a private temporary file.

    GitHub secrets hold a kubeconfig's content, not a path: the content goes to a 0600 file
    that is deleted afterwards, and is masked so no log shows it. A variable holding a path to
    an existing file (handy on a laptop) is used as that path. Without the variable, the
    environment's ``kubeconfig`` file, then ``KUBECONFIG`` or ``~/.kube/config``, are used.
    """
    environ = os.environ if environ is None else environ
    content = environ.get(env.kubeconfig_env or "", "") if env.kubeconfig_env else ""
    if content and "\n" not in content.strip() and Path(content.strip()).is_file():
        yield Access(content.strip(), env.kube_context, f"${env.kubeconfig_env} (path)")
        return
    if content:
        from ci import gha

        gha.mask(content)
        fd, name = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
            yield Access(name, env.kube_context, f"${env.kubeconfig_env}")
        finally:
            Path(name).unlink(missing_ok=True)
        return
    if env.kubeconfig is not None:
        if not env.kubeconfig.is_file():
            raise ConfigError(f"environment '{env.name}': kubeconfig {env.kubeconfig} not found")
        yield Access(str(env.kubeconfig), env.kube_context, str(env.kubeconfig))
        return
    if environ.get("KUBECONFIG"):
        yield Access(environ["KUBECONFIG"], env.kube_context, f"KUBECONFIG={environ['KUBECONFIG']}")
        return
    unset = (
        f"${env.kubeconfig_env} and KUBECONFIG unset" if env.kubeconfig_env else "KUBECONFIG unset"
    )
    yield Access(None, env.kube_context, f"{Path.home() / '.kube' / 'config'} ({unset})")
