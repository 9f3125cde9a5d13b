"""Delivery pipeline steps for containerised applications deployed with Helm."""

from importlib import metadata

#: The distribution's name on package indexes; the command and the import package are ``ci``.
DISTRIBUTION = "ci-delivery-steps"

try:
    #: Set by setuptools-scm from the latest git tag when the package is built or installed.
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0"
