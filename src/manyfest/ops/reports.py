"""Publish reports: read them, merge the reports of a sharded run, write the merged one.

A report is what ``manyfest publish --report FILE`` writes: JSON Lines, one object per list
(``target``, ``tags``, ``digest``, ``status``, ``requests``... see
:func:`manyfest.ops.publish.result_json`), or the ``--json`` document
``{"results": [...], "summary": {...}}`` whose ``results`` are the same objects, or one
list's object alone spread over several lines (pretty-printed, e.g. by ``jq``).

:func:`merge` joins the reports of the N shards of one plan (``publish --shard K/N``) into
one report, as if one run had published the whole plan:

* every object is passed through unchanged, keys the merge does not know included (a JSON
  Lines line is written as the bytes read; a ``--json`` result is re-encoded compactly,
  its keys in the order read);
* order: the reports in the order given, each one's lists in its order (shard order: the
  merge does not read the plan, so it cannot restore the plan's order);
* a list in two reports is refused: two objects with the same target, or the same tag
  reference (registry, repository and tag; ``host`` and ``host:80`` are one registry) among
  their ``tags``, unless the two objects are identical (the same report given twice: kept
  once);
* lists of a ``--dry-run`` run (``"dry_run": true``) and lists of a real run are not merged
  together (refused); a merge of dry-run lists only says so (:attr:`Merged.dry_run`);
* an object without a ``target`` reference, a ``tags`` list of tags, a ``status`` of
  ``created``, ``updated``, ``unchanged`` or ``failed``, with ``requests`` not a whole
  number, or with ``dry_run`` not ``true``/``false``, is refused, naming ``file:line``.

No CLI here: :mod:`manyfest.cli.report` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from manyfest import reference
from manyfest.errors import InvalidReferenceError, UsageError
from manyfest.files import atomic_write
from manyfest.words import plural

STATUSES = ("created", "updated", "unchanged", "failed")
"""A list's statuses, in the order summaries count them."""

REPORT_LIMIT = 1024 * 1024 * 1024
"""Largest report read, in bytes (a 10,000-list report is about 3 MiB)."""

_FORM_HINT = ("a report is JSON Lines as `manyfest publish --report` writes it (one object "
              "per list), publish's --json document, or one list's object")
_CONFLICT_HINT = ("each list belongs in one shard's report: give each shard's report once "
                  "(its latest run), all of the shards of one plan")
_DRY_RUN_HINT = ("a --dry-run run publishes nothing: merge the reports of real runs only, or "
                 "of --dry-run runs only")


@dataclass(frozen=True, slots=True)
class Entry:
    """One list of a report.

    Attributes:
        where: ``file:line`` (JSON Lines) or ``file: results[i]`` (a ``--json`` document).
        fields: the object as read (every key).
        raw: the object's JSON bytes as written to a merged report (one line, no newline).
        target: the ``target`` reference.
    """

    where: str
    fields: dict[str, Any]
    raw: bytes
    target: reference.Reference

    @property
    def status(self) -> str:
        """``created``, ``updated``, ``unchanged`` or ``failed``."""
        status: str = self.fields["status"]
        return status

    @property
    def tags(self) -> list[str]:
        """Every tag of the list (the target's first, as publish reports them)."""
        tags: list[str] = self.fields["tags"]
        return tags

    @property
    def requests(self) -> int:
        """The list's requests (0 when the object has no ``requests``)."""
        requests: int = self.fields.get("requests", 0)
        return requests

    @property
    def dry_run(self) -> bool:
        """True on a line of a ``--dry-run`` run (``"dry_run": true``)."""
        return self.fields.get("dry_run") is True

    def key(self) -> bytes:
        """The object with its keys sorted, as bytes: equal for identical objects."""
        return msgspec.json.encode(self.fields, order="sorted")


def _entry(obj: object, raw: bytes, where: str) -> Entry:
    """Check one report object (see the module's rules).

    Raises:
        UsageError: (exit 2) the object is not a list's report; the message starts with
            ``where``.
    """
    def bad(what: str) -> UsageError:
        return UsageError(f"{where}: {what}", hint=_FORM_HINT)

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object (one list), got {type(obj).__name__}")
    target = obj.get("target")
    if not isinstance(target, str):
        raise bad("no target (a list's reference)" if target is None
                  else f"target: expected a reference, got {target!r}")
    try:
        ref = reference.parse(target)
    except InvalidReferenceError as exc:
        raise bad(f"target: {exc.message}") from None
    if ref.tag is None or ref.digest is not None:
        raise bad(f"target: {target!r} is not a reference with a tag")
    tags = obj.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) and reference.valid_tag(t)
                                             for t in tags):
        raise bad(f"tags: expected a list of tags, got {tags!r}")
    status = obj.get("status")
    if status not in STATUSES:
        raise bad(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    requests = obj.get("requests", 0)
    if not isinstance(requests, int) or isinstance(requests, bool) or requests < 0:
        raise bad(f"requests: expected a whole number, got {requests!r}")
    dry_run = obj.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise bad(f"dry_run: expected true or false, got {dry_run!r}")
    return Entry(where, obj, raw, ref)


def parse(data: bytes, name: str) -> list[Entry]:
    """The lists of one report's bytes (``name`` names it in errors), in its order.

    JSON Lines (blank lines ignored; an empty file holds no list), a ``--json`` document
    (an object with a ``results`` list), or one list's object over several lines (a
    pretty-printed line: re-encoded compactly, its keys in the order read; a one-line
    object is JSON Lines, kept as the bytes read).

    Raises:
        UsageError: (exit 2) a line that is not JSON or not a list's report, naming
            ``name:line`` (``name: results[i]`` in a document, ``name`` for an object over
            several lines).
    """
    text = data.strip()
    if text.startswith(b"{"):
        try:
            whole = msgspec.json.decode(text)
        except msgspec.DecodeError:
            whole = None  # several lines: JSON Lines
        if isinstance(whole, dict) and "results" in whole and "target" not in whole:
            results = whole["results"]
            if not isinstance(results, list):
                raise UsageError(f"{name}: results: expected a list of lists' reports",
                                 hint=_FORM_HINT)
            return [_entry(obj, msgspec.json.encode(obj), f"{name}: results[{i}]")
                    for i, obj in enumerate(results)]
        if isinstance(whole, dict) and b"\n" in text:  # one object, pretty-printed
            return [_entry(whole, msgspec.json.encode(whole), name)]
    out: list[Entry] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise UsageError(f"{name}:{number}: not JSON ({exc})", hint=_FORM_HINT) from None
        out.append(_entry(obj, line, f"{name}:{number}"))
    return out


def read(path: Path) -> list[Entry]:
    """The lists of the report file ``path`` (see :func:`parse`), at most
    :data:`REPORT_LIMIT` bytes.

    Raises:
        UsageError: (exit 2) the file cannot be read, is too large, or is not a report.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(REPORT_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"cannot read report {path}: {exc.strerror or exc}",
                         hint="give the --report files of the publish runs") from None
    if len(data) > REPORT_LIMIT:
        raise UsageError(f"report {path} is larger than {REPORT_LIMIT // 1024**3} GiB",
                         hint=_FORM_HINT)
    return parse(data, str(path))


@dataclass(slots=True)
class Merged:
    """A merged report: its lists, in order, how many identical copies were dropped, how
    many reports were read, and whether its lists are a ``--dry-run`` run's (all of them:
    :func:`merge` refuses a mix)."""

    entries: list[Entry] = field(default_factory=list)
    duplicates: int = 0
    reports: int = 0
    dry_run: bool = False

    def count(self, status: str) -> int:
        """Lists with ``status``."""
        return sum(1 for e in self.entries if e.status == status)

    @property
    def requests(self) -> int:
        """Requests of every list."""
        return sum(e.requests for e in self.entries)

    def to_jsonl(self) -> bytes:
        """The merged report: one line per list."""
        return b"".join(e.raw + b"\n" for e in self.entries)

    def fields(self) -> dict[str, object]:
        """The summary as the ``fields`` of its JSON log event: ``reports``, ``lists``, one
        count per status (``created``, ``updated``, ``unchanged``, ``failed``, zeros
        included), ``failed_targets`` (every failed list's target), ``requests``,
        ``duplicates`` (identical copies dropped) and ``dry_run``."""
        out: dict[str, object] = {"reports": self.reports, "lists": len(self.entries)}
        out.update({s: self.count(s) for s in STATUSES})
        out["failed_targets"] = [str(e.target) for e in self.entries if e.status == "failed"]
        out.update(requests=self.requests, duplicates=self.duplicates, dry_run=self.dry_run)
        return out

    def summary(self, names: int = 3) -> str:
        """One line: reports merged (``(dry run)`` when they are a ``--dry-run`` run's),
        lists per status (the failed ones named, at most ``names`` of them), requests,
        identical copies dropped.

        E.g. ``merged 2 reports: 5 lists (3 created, 1 unchanged, 1 failed:
        reg/app:1.0), 112 requests``; ``merged 2 reports (dry run): 5 lists (5 created),
        30 requests``.
        """
        counts = [f"{self.count(s)} {s}" for s in STATUSES if self.count(s)]
        failed = [str(e.target) for e in self.entries if e.status == "failed"]
        if failed:
            shown = ", ".join(failed[:names])
            more = f" and {len(failed) - names} more" if len(failed) > names else ""
            counts[-1] += f": {shown}{more}"
        lists = plural(len(self.entries), "list")
        line = f"merged {plural(self.reports, 'report')}"
        line += f" (dry run): {lists}" if self.dry_run else f": {lists}"
        if counts:
            line += f" ({', '.join(counts)})"
        line += f", {plural(self.requests, 'request')}"
        if self.duplicates:
            line += f"; {plural(self.duplicates, 'identical copy', 'identical copies')} " \
                    "of a list dropped"
        return line


def merge(reports: Sequence[Sequence[Entry]]) -> Merged:
    """Merge reports (each a sequence of :func:`read`'s entries), in the order given.

    Raises:
        UsageError: (exit 2) two different objects with the same target, or sharing a tag
            reference (the message names both places and the reference); a line of a
            ``--dry-run`` run and a line of a real run (the message names the first of
            each kind).
    """
    merged = Merged(reports=len(reports))
    seen: set[bytes] = set()
    claimed: dict[tuple[str, str, str], tuple[Entry, bool]] = {}
    first_of: dict[bool, Entry] = {}  # the first kept line of a dry run (True) / a real run
    for entries in reports:
        for entry in entries:
            key = entry.key()
            if key in seen:
                merged.duplicates += 1
                continue
            first_of.setdefault(entry.dry_run, entry)
            if len(first_of) == 2:
                dry, real = first_of[True], first_of[False]
                raise UsageError(f"{dry.where} is a list of a --dry-run run and {real.where} "
                                 "a list of a real run", hint=_DRY_RUN_HINT)
            ref = entry.target
            mine = [(ref.tag or "", True)] + [(t, False) for t in entry.tags if t != ref.tag]
            for tag, is_target in mine:
                slot = (reference.registry_key(ref.registry), ref.repository, tag)
                other = claimed.get(slot)
                if other is not None:
                    first, first_is_target = other
                    both = f"{first.where} and {entry.where} both have {ref.with_tag(tag)}"
                    raise UsageError(
                        f"{both} as their target" if first_is_target and is_target else
                        f"{both} ({_role(first, first_is_target)}; {_role(entry, is_target)})",
                        hint=_CONFLICT_HINT,
                    )
            for tag, is_target in mine:
                slot = (reference.registry_key(ref.registry), ref.repository, tag)
                claimed[slot] = (entry, is_target)
            seen.add(key)
            merged.entries.append(entry)
    merged.dry_run = True in first_of
    return merged


def _role(entry: Entry, is_target: bool) -> str:
    """``the target of a list`` / ``a tag of reg/app:1``."""
    return "a list's target" if is_target else f"a tag of {entry.target}"


def write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`manyfest.files.atomic_write`: readers
    see the old file or the new one, never a part). A file already at ``path`` keeps its
    permission bits (a read-only ``0o444`` report stays read-only); a new one gets
    ``0o666`` less the umask.

    Raises:
        OSError: the directory does not exist or cannot be written, ``path`` is a
            directory; the temporary file is removed.
    """
    atomic_write(path.resolve(), data)
