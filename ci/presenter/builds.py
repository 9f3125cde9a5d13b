"""Built and pushed images: progress lines, the table, outputs and pruning."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ci import gha

if TYPE_CHECKING:
    from ci.images.credentials import LoginResult
    from ci.images.prune import PruneResult
    from ci.images.results import ImageResult, ImagesResult


def image_progress(names: Iterable[str]) -> Callable[[str, str], None]:
    """A progress sink for parallel builds: one aligned line at a time."""
    width = max((len(n) for n in names), default=0)
    lock = threading.Lock()

    def show(name: str, status: str) -> None:
        with lock:
            gha.echo(f"{name:<{width}}  {status}")

    return show


def images(result: ImagesResult) -> None:
    """Build logs (collapsed under Actions), the table, the job summary and step outputs."""
    for image in result.images:
        if gha.is_actions() and image.log:
            with gha.group(f"build log: {image.name}"), gha.untrusted_output():
                for line in image.log:
                    gha.echo(line)
    headers = ["image", "status", "digest", "tags", "time"]
    rows = [
        [i.name, i.status, i.digest or i.error, ", ".join(i.tags), f"{i.duration:.1f}s"]
        for i in result.images
    ]
    gha.echo()
    short = [h for h in headers if h != "tags"]
    gha.echo(gha.text_table(short, [r[:3] + r[4:] for r in rows]).rstrip())
    gha.echo(f"{builder_line(result)}, {result.duration:.1f}s; written {result.path}")
    for image in result.images:
        if image.pushed:
            gha.echo(supply_line(image))
    for message in result.warnings:
        gha.warning(message, title="images")
    summary = [f"### Images\n\n{builder_line(result)}.\n"]
    summary += [f"> **Warning:** {message}\n" for message in result.warnings]
    gha.add_summary("\n".join(summary) + "\n" + gha.markdown_table(headers, rows))
    for image in result.images:
        if image.digest:
            gha.set_output(f"{image.name}-digest", image.digest)
    gha.set_output("images", json.dumps([i.to_json() for i in result.images]))


def builder_line(result: ImagesResult) -> str:
    """Which builder ran, named and described: a classic build should not pass unnoticed."""
    about = f" ({result.builder_description})" if result.builder_description else ""
    return f"builder {result.builder}{about}"


def supply_line(image: ImageResult) -> str:
    """What a pushed image carries: provenance, SBOM, signature (made now or found)."""
    kinds = [k for k, on in (("provenance", image.provenance), ("sbom", image.sbom)) if on]
    signature = "unsigned"
    if image.signature:
        signature = f"signature {image.signature[:19]} ({'signed' if image.signed else 'kept'})"
    return f"{image.name}: attestations {', '.join(kinds) or 'none'}; {signature}"


def images_pruned(result: PruneResult) -> None:
    """One line per image deleted (or that a dry run would delete), then the totals."""
    verb = "would delete" if result.dry_run else "deleted"
    for d in result.deletions:
        tags = ", ".join(d.tags) or "untagged"
        extra = f" (+{len(d.also)} attestation/signature manifests)" if d.also else ""
        branch = d.branch or "no branch"
        gha.echo(f"{verb} {d.repo}@{d.digest} [{branch}, {d.created:%Y-%m-%d}] {tags}{extra}")
    hint = "; run with --delete to delete" if result.dry_run and result.deletions else ""
    gha.echo(f"{verb} {len(result.deletions)} image(s), kept {result.kept}{hint}")


def logged_in(result: LoginResult) -> None:
    gha.echo(f"logged in to {result.host} as {result.username}")
