"""Build, tag and push the configured images; skip those whose inputs the registry already has.

How it fits together, one module per concern:

* ``gitinfo`` and ``tags``: the commit, branch and version tag, and the image tags they give
  (full and short SHA, branch, semver family on a version tag).
* ``inputs``: the content hash of everything that decides an image's content (the Dockerfile,
  every context file ``.dockerignore`` keeps, build args, target, platforms and the base image
  references); it becomes the content tag ``inputs-<hash>``.
* ``plan``: one ``Job`` per image from the configuration and git: repository, tags, labels, args.
* ``step`` (``build_images``) runs the jobs in a bounded thread pool. A job whose content tag is
  already in the registry (``lookup``) is *cached*: nothing is built, the other tags are added
  to the existing manifest through the registry API (``publish``). Otherwise a builder builds
  and pushes the first tag, the registry confirms the digest, the remaining tags are added, and
  the content tag goes last -- so a failed run never leaves a content tag on a partial image.
* ``builders``: ``BuildxBuilder`` (BuildKit through ``docker buildx``, registry cache, a daemon
  from ``buildkit``) and ``DockerBuilder`` (the Engine API's classic builder, Docker SDK).
* ``credentials``: registry credentials from the environment and ``docker login``.
* ``results``: ``images.json`` and the per-image build logs.

Steps report progress through a callback and return ``ImagesResult``; only the CLI prints.
This module only names what the CLI calls; the CLI imports it inside its commands.
"""

from ci.images.credentials import login
from ci.images.plan import select_images
from ci.images.step import build_images

__all__ = ["build_images", "login", "select_images"]
