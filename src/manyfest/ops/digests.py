"""``--digests FILE``: the digests a run published, for a signing step.

One line per manifest, ``registry/repository@sha256:<hex>`` (the form ``cosign sign`` and
``notation sign`` take), in a deterministic order: the lists in plan order, each list's
children (its entries, in list order) before the list itself; a manifest already written
(the same child in two lists of one repository, the lists of one unit) is not written
again. The children are named in the list's repository, where the list's entries are.

Which lists count: every list whose tags hold it when the run ends, ``created``,
``updated`` and ``unchanged`` alike (a signing step after a re-run must see the whole
release, not only what moved; signing a digest again adds a signature, it never removes
one: filter with the ``--report``'s ``status`` to sign only what changed). Left out: a
``failed`` list, and a list none of whose tags holds it (every tag left holding another
list by ``--existing skip``). With ``--dry-run`` the file says what the run would publish.

No CLI here: :mod:`manyfest.cli.publish` and :mod:`manyfest.cli.lists` write it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from manyfest.engine import Engine, ListResult, run_bounded
from manyfest.errors import ManyfestError
from manyfest.files import atomic_write

STDOUT = "-"
"""The ``--digests`` value that writes the lines on stdout instead of a file."""

_OK = ("created", "updated", "unchanged")


def published(result: ListResult) -> bool:
    """True when ``result``'s list (or copy) counts: it did not fail, it was built (has a
    digest), and at least one of its tags holds it (not every tag left by ``--existing
    skip``), or it has no tag (a copy by digest)."""
    return (result.status in _OK and bool(result.digest)
            and (not result.tags or any(t not in result.existing for t in result.tags)))


def digest_lines(results: Iterable[ListResult]) -> list[str]:
    """The lines of the ``--digests`` file for ``results`` (in plan order): see the
    module's rules. Each line ends without a newline."""
    seen: set[str] = set()
    lines: list[str] = []
    for r in results:
        if published(r):
            list_lines(r.target.name, r.children, r.digest, into=lines, seen=seen)
    return lines


def list_lines(name: str, children: Iterable[str], digest: str, *,
               into: list[str] | None = None, seen: set[str] | None = None) -> list[str]:
    """One list's lines: each child of ``children`` (digests, list order), then the list
    ``digest``, all as ``name@digest`` (``name``: ``registry/repository``), each line once
    (``seen``: lines already written, updated); appended to ``into`` (returned)."""
    lines = [] if into is None else into
    seen = set() if seen is None else seen
    for d in (*children, digest):
        line = f"{name}@{d}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


async def fill_children(engine: Engine, results: Sequence[ListResult],
                        lists_in_flight: int = 32) -> None:
    """Fill :attr:`~manyfest.engine.ListResult.children` of the lists that count but were
    never built in this run (``--since`` proved them unchanged from the report; copies whose
    target already held the digest): one GET
    of the list by digest each (verified; from the on-disk cache when it holds it), at most
    ``lists_in_flight`` at once. A list that cannot be read keeps no children: its index
    digest alone is written (the error is not the run's: the list is published).
    """
    missing = [r for r in results if published(r) and not r.children]

    async def one(r: ListResult) -> None:
        manifest = engine.cache.manifest(r.digest)
        try:
            if manifest is None:
                manifest = await engine.client.get_manifest(r.target.with_digest(r.digest))
                engine.cache.put_manifest(manifest)
            if manifest.is_index:  # an image (a copy's) has no children
                r.children = tuple(d.digest for d in manifest.index().manifests)
        except ManyfestError:
            return

    await run_bounded(one, ((r,) for r in missing), lists_in_flight)


def write(target: str, lines: Sequence[str]) -> None:
    """Write ``lines`` (newline after each) to the file ``target`` atomically (a temporary
    file, then a rename: never half written), or to stdout when ``target`` is ``-``.

    Raises:
        OSError: the file cannot be written (the old file, if any, is left as it was).
    """
    data = "".join(line + "\n" for line in lines).encode()
    if target == STDOUT:
        sys.stdout.write(data.decode())
        sys.stdout.flush()
        return
    atomic_write(Path(target).resolve(), data)
