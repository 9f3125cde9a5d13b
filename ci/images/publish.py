"""Tags added to a pushed manifest through the registry API, content tag last, undone on failure.

Why through the API: adding a tag to an image the registry holds is one manifest GET and PUT,
no layer moves. Why this order, and the undo: the content tag says "this image is complete";
written last, and taken back with every other tag of a run that failed midway, it never names a
partial image, so the next run cannot mistake one for finished.
"""

from __future__ import annotations

import contextlib

from ci.errors import RegistryError
from ci.images.plan import Job, Progress
from ci.registry import Client, split_reference


def _repo_path(job: Job) -> str:
    """The repository's path inside its registry, as the registry API names it."""
    return split_reference(f"{job.repository}:{job.tags[0]}")[1]


def confirm_and_tag(job: Job, registry: Client, digest: str, progress: Progress) -> None:
    """The builder pushed ``tags[0]``; check the registry serves that digest, then tag."""
    path = _repo_path(job)
    served = registry.digest(path, job.tags[0])
    if served != digest:
        raise RegistryError(
            f"image {job.name}: registry serves {served or 'nothing'} for {job.tags[0]}, "
            f"expected {digest}; content tag not written"
        )
    add_tags(job, registry, digest, list(job.tags[1:]), progress, fresh=True)


def add_tags(
    job: Job,
    registry: Client,
    digest: str,
    tags: list[str],
    progress: Progress,
    *,
    fresh: bool = False,
) -> None:
    """Add tags to a pushed manifest, content tag last; undo this run's tags on failure.

    Undoing means pointing moved tags back where they were and, for an image pushed by this
    run (``fresh``), deleting its manifest, which removes every tag this run gave it.
    """
    path = _repo_path(job)
    previous = {t: registry.digest(path, t) for t in tags}
    todo = [t for t in tags if previous[t] != digest]
    if not todo:
        return  # the same content pushed twice: nothing to write
    manifest = registry.manifest(path, digest)
    if manifest is None:
        raise RegistryError(
            f"image {job.name}: {job.repository}@{digest} vanished from the registry"
        )
    written: list[str] = []
    progress(job.name, f"tagging {', '.join(todo)}")
    try:
        for tag in todo:
            registry.put_manifest(path, tag, manifest)
            written.append(tag)
    except RegistryError:
        _undo_tags(registry, path, {t: previous[t] for t in written})
        if fresh:
            with contextlib.suppress(RegistryError):
                registry.delete(path, digest)
        raise


def _undo_tags(registry: Client, path: str, previous: dict[str, str | None]) -> None:
    """Best effort: point moved tags back where they were (the registry may be down)."""
    for tag, old in previous.items():
        if old is None:
            continue
        try:
            manifest = registry.manifest(path, old)
            if manifest is None:
                return
            registry.put_manifest(path, tag, manifest)
        except RegistryError:
            return
