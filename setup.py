"""Package list for setuptools: everything under ``ci/`` plus ``ci.hack``.

``ci.hack`` is the repository's ``hack/`` folder (mapped in pyproject.toml), shipped so that an
installed ``ci cluster up`` runs the same scripts as ``make cluster-up``; a ``packages.find``
table cannot add a package that lives outside ``ci/``. Data folders (schemas, templates, the
scripts' subfolders) are namespace packages, so they are listed too.
"""

from setuptools import find_namespace_packages, setup

_SKIP = ["*__pycache__*", "*node_modules*"]
_CI = find_namespace_packages(include=["ci", "ci.*"], exclude=_SKIP)
_HACK = [f"ci.hack.{name}" for name in find_namespace_packages(where="hack", exclude=_SKIP)]

setup(packages=[*_CI, "ci.hack", *_HACK])
