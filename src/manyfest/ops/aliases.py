"""Floating release aliases computed from versions: parsing and assignment (pure, no I/O).

A compact plan document may mark one matrix key as a version (``aliases: {version: KEY}``,
see :mod:`manyfest.ops.plan`). Each of its values is parsed by :func:`parse_version`, and
each alias template (default :data:`DEFAULT_ALIASES`: ``{major}.{minor}{suffix}``,
``{major}{suffix}``, ``{latest}``) is given to the highest version of its group only, as
release pipelines do (Docker official images: ``3.13.0, 3.13, 3, latest`` and
``3.13.0-slim, 3.13-slim, 3-slim, slim``). :func:`assign` does the grouping.

Versions are semver-ish::

    [v]MAJOR[.MINOR[.PATCH]][PRERELEASE][-SUFFIX]

* numbers compare numerically (``1.10`` > ``1.9``) and keep their text in placeholders
  (``24.04`` renders ``{minor}`` as ``04``); a missing minor or patch compares as 0, so
  ``1.2`` and ``1.2.0`` are the same version;
* the ``v`` prefix is dropped by the placeholders (``v1.2.3``: ``{major}`` is ``1``), as
  docker/metadata-action's semver patterns drop it;
* a pre-release is one of the words ``alpha``, ``beta``, ``rc``, ``pre``, ``preview``,
  ``prerelease``, ``dev`` (any case), directly or after ``-`` or ``.``, optionally followed
  by a number directly or after ``.`` (``1.2.3-rc1``, ``1.2.3-beta.2``, ``1.0.dev0``), or
  PEP 440's ``a``/``b``/``rc``/``c`` with a number, directly or after ``-`` or ``.``
  (``3.13.0a1``, ``3.13.0rc2``, ``1.2.3-b1``); pre-releases order below their release:
  dev < alpha < beta < pre/preview/prerelease/rc/c;
* anything else after a ``-`` that starts with a letter is a variant suffix (``-slim``,
  ``-slim-bookworm``, ``-windowsservercore-ltsc2022``), which partitions the groups instead
  of ordering: ``3.12.1-slim`` floats ``3-slim``, never ``3``;
* a ``-``-separated part of the suffix that is a pre-release (``rc1``, ``beta.2``, ``b1``)
  is the version's pre-release, wherever it stands: ``1.2.3-slim-rc1`` is the pre-release
  ``-rc1`` of ``1.2.3`` with the suffix ``-slim`` (the same version as ``1.2.3-rc1-slim``),
  so it floats nothing. Two pre-releases in one value, or a number after a pre-release word
  and a ``-`` (``1.2.3-beta-2``), are not a version.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

VERSION_SHAPE = "[v]MAJOR[.MINOR[.PATCH]][PRERELEASE][-SUFFIX], e.g. 1.2.3, v2.1, 3.12.1-slim, " \
    "1.2.3-rc1"
"""The shape a version value must have, as error messages say it."""

DEFAULT_ALIASES = ("{major}.{minor}{suffix}", "{major}{suffix}", "{latest}")
"""The alias templates of ``aliases:`` when it gives no ``tags``, most specific first."""

VERSION_PLACEHOLDERS = ("major", "minor", "patch")
"""Placeholders every template of a document with ``aliases:`` may use."""

ALIAS_PLACEHOLDERS = ("suffix", "latest")
"""Placeholders only alias templates may use (see :func:`suffix_placeholders`)."""

_PRE_WORDS = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "pre": 3, "preview": 3,
              "prerelease": 3, "rc": 3, "c": 3}

_PRE = r"""
    (?P<word>alpha|beta|prerelease|preview|pre|rc|dev)(?:\.?(?P<num>[0-9]+))?
  | (?P<short>a|b|rc|c)(?P<shortnum>[0-9]+)
"""
_VERSION_RE = re.compile(
    rf"""
    (?P<prefix>v)?
    (?P<major>[0-9]+)
    (?:\.(?P<minor>[0-9]+)(?:\.(?P<patch>[0-9]+))?)?
    (?P<pre>[-.]?(?:{_PRE}))?
    (?P<suffix>-[A-Za-z][A-Za-z0-9_.-]*)?
    """,
    re.VERBOSE | re.IGNORECASE,
)
_PRE_PART = re.compile(_PRE, re.VERBOSE | re.IGNORECASE)
"""A ``-``-separated part of a suffix that is a pre-release (``rc1``, ``beta.2``, ``b1``)."""
_PRE_START = re.compile(r"-(?:alpha|beta|prerelease|preview|pre|rc|dev)(?![A-Za-z])",
                        re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed version value.

    Attributes:
        text: the value as written (``v3.12.1-rc2-slim``).
        major, minor, patch: the numbers as written; ``minor``/``patch`` are '' when absent.
        pre: the pre-release as written (``-rc2``), '' for a release.
        suffix: the variant suffix as written, with its leading ``-`` (``-slim``), or ''.
        key: the order of versions: the three numbers (missing ones 0), then 1 for a
            release or 0 and the pre-release's rank and number. Versions of different
            suffixes are not compared by :func:`assign` (they are in different groups).
    """

    text: str
    major: str
    minor: str
    patch: str
    pre: str
    suffix: str
    key: tuple[int, ...]

    @property
    def release(self) -> bool:
        """True unless the version is a pre-release (which never gets a floating alias)."""
        return not self.pre

    def placeholders(self) -> dict[str, str]:
        """``{major, minor, patch}`` present in this version, as written (no ``v``)."""
        values = {"major": self.major, "minor": self.minor, "patch": self.patch}
        return {k: v for k, v in values.items() if v}

    def missing(self) -> tuple[str, ...]:
        """The version placeholders this version has no number for (``1.2``: patch)."""
        return tuple(k for k in VERSION_PLACEHOLDERS if k not in self.placeholders())


def parse_version(text: str) -> Version | None:
    """Parse a semver-ish version (see the module docstring); None when ``text`` is not one.

    A suffix whose first part is a pre-release word with something other than a number
    after it (``1.2.3-beta-2``) is not a version either: it would be read as a variant.
    A later part of the suffix that is a pre-release is the pre-release (``1.2.3-slim-rc1``:
    pre ``-rc1``, suffix ``-slim``); a second pre-release, or a part of digits only after
    it (``1.2.3-slim-rc-1``), makes the value not a version.
    """
    m = _VERSION_RE.fullmatch(text)
    if m is None:
        return None
    suffix = m.group("suffix") or ""
    if _PRE_START.match(suffix):
        return None
    pre = m.group("pre") or ""
    found: re.Match[str] | None = m if pre else None
    parts = suffix.split("-")[1:]
    kept: list[str] = []
    for i, part in enumerate(parts):
        pm = _PRE_PART.fullmatch(part)
        if pm is None:
            kept.append(part)
            continue
        after = parts[i + 1] if i + 1 < len(parts) else ""
        if found is not None or after.isdigit():
            return None
        found, pre = pm, f"-{part}"
    suffix = "".join(f"-{part}" for part in kept)
    numbers = (int(m.group("major")), int(m.group("minor") or 0), int(m.group("patch") or 0))
    if found is not None:
        word = (found.group("word") or found.group("short")).lower()
        number = int(found.group("num") or found.group("shortnum") or 0)
        key = (*numbers, 0, _PRE_WORDS[word], number)
    else:
        key = (*numbers, 1, 0, 0)
    return Version(text, m.group("major"), m.group("minor") or "", m.group("patch") or "",
                   pre, suffix, key)


def latest_name(suffix: str) -> str:
    """The ``{latest}`` alias of a suffix: ``latest`` without one, else the suffix without
    its leading separators (``-slim`` → ``slim``, as Docker official images name it)."""
    return suffix.lstrip("-_.") or "latest"


def suffix_placeholders(suffix: str) -> dict[str, str]:
    """``{suffix}`` (the whole suffix: the version's own, then the suffix keys' values) and
    ``{latest}`` (:func:`latest_name`) of a combination."""
    return {"suffix": suffix, "latest": latest_name(suffix)}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One list of a document, as :func:`assign` sees it.

    Attributes:
        partition: what the list's groups are keyed by besides the alias text: the target
            repository, the version's suffix and the values of every other matrix key.
        version: the list's version.
        aliases: per alias template, the alias rendered for this list, or None where the
            template does not apply (it needs a number the version lacks).
    """

    partition: Hashable
    version: Version
    aliases: tuple[str | None, ...]


def assign(candidates: Sequence[Candidate]) -> list[tuple[str, ...]]:
    """Give each floating alias to the highest version of its group.

    A group is the candidates with the same partition and the same rendered alias of one
    template (``{major}.{minor}{suffix}`` renders ``3.12-slim`` for 3.12.6-slim and
    3.12.7-slim: one group). Pre-releases are in no group. The highest version by
    :attr:`Version.key` gets the alias; the others get nothing of that group.

    Returns:
        Per candidate, in order, the aliases it gets, in template order, each once.

    Raises:
        ValueError: two release candidates of one group have versions of equal key (the
            caller refuses equal versions first, so this is a bug guard).
    """
    best: dict[tuple[Hashable, int, str], int] = {}
    for i, c in enumerate(candidates):
        if not c.version.release:
            continue
        for j, alias in enumerate(c.aliases):
            if alias is None:
                continue
            group = (c.partition, j, alias)
            held = best.get(group)
            if held is None:
                best[group] = i
                continue
            other = candidates[held].version
            if c.version.key == other.key:
                raise ValueError(f"versions {other.text!r} and {c.version.text!r} are equal")
            if c.version.key > other.key:
                best[group] = i
    out: list[list[str]] = [[] for _ in candidates]
    for (_, _, alias), i in sorted(best.items(), key=lambda item: item[0][1]):
        if alias not in out[i]:
            out[i].append(alias)
    return [tuple(a) for a in out]
