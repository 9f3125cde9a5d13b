"""Who the step is to the registry: credentials from the environment, ``docker login``, and a
registry API client that carries them.

Why environment variables: CI secrets arrive that way, and on GHCR the workflow's own
``GITHUB_TOKEN`` suffices, so a repository needs no extra secret to push its images. The
password goes to ``docker login`` on stdin and is masked in the Actions log first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ci import gha, proc
from ci.errors import ConfigError, RegistryError
from ci.registry import Client

if TYPE_CHECKING:
    from ci.config import Config
    from ci.config import Registry as RegistryConfig


def credentials(
    reg: RegistryConfig, env: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """(username, password) from the configured variables; GHCR falls back to the Actions token."""
    env = os.environ if env is None else env
    user, password = env.get(reg.username_env, ""), env.get(reg.password_env, "")
    if (not user or not password) and reg.host == "ghcr.io":
        user = user or env.get("GITHUB_ACTOR", "")
        password = password or env.get("GITHUB_TOKEN", "")
    if user and password:
        return user, password
    return None


@dataclass(frozen=True)
class LoginResult:
    host: str
    username: str
    message: str


def login(cfg: Config, env: Mapping[str, str] | None = None) -> LoginResult:
    """``docker login`` with the password on stdin; the secret is masked before anything runs."""
    reg = cfg.registry
    creds = credentials(reg, env)
    if creds is None:
        ghcr = " (or GITHUB_ACTOR and GITHUB_TOKEN)" if reg.host == "ghcr.io" else ""
        raise ConfigError(
            f"registry {reg.host}: no credentials: set {reg.username_env} and "
            f"{reg.password_env}{ghcr}"
        )
    user, password = creds
    gha.mask(password)
    result = proc.run(
        ("docker", "login", reg.host, "--username", user, "--password-stdin"),
        input=password,
        timeout=60,
        check=False,
        what=f"docker login {reg.host}",
    )
    if not result.ok:
        reason = proc.tail(result.stderr or result.stdout, 1).replace(password, "***")
        raise RegistryError(f"registry {reg.host}: login as {user} failed: {reason}")
    return LoginResult(host=reg.host, username=user, message=result.stdout.strip())


def registry_client(cfg: Config, env: Mapping[str, str] | None = None) -> Client:
    """A registry API client for the configured registry, with credentials when given."""
    creds = credentials(cfg.registry, env)
    return Client(
        host=cfg.registry.host,
        insecure=cfg.registry.insecure,
        username=creds[0] if creds else None,
        password=creds[1] if creds else None,
    )
