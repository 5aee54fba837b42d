"""``annotate --remote LIST REF``: change one entry of a remote index, every other byte kept.

The index is fetched (GET by tag), one descriptor is edited and the index is PUT back to the
same tag; its children are not touched (they are already in the repository). The edit is
done on the served bytes (:func:`rewrite_entry`, a pure function):

* the top-level fields and every other descriptor keep their exact bytes;
* in the changed descriptor, members that do not change keep their exact bytes (key, the
  whitespace around the colon, value), and so does the whitespace between them; only the
  values that change are encoded (strings escaped as Go's ``json.Marshal`` does);
* new members go where the formats put them: ``annotations`` before ``platform`` (OCI's
  descriptor order), platform keys in the Docker/OCI order (``architecture``, ``os``,
  ``os.version``, ``os.features``, ``variant``), a new annotation key in sorted position
  when the existing keys are sorted (as Go writes maps), else last;
* new objects and arrays follow the document's layout (its indentation unit, or compact
  with its separators).

A Docker manifest list has no descriptor annotations (distribution's
``docs/spec/manifest-v2-2.md`` defines ``mediaType``, ``size``, ``digest`` and ``platform``
only), so setting one on a Docker list is refused.

Between the GET and the PUT the tag is HEADed again: if it moved (someone published
meanwhile) nothing is written. The OCI distribution-spec has no conditional PUT, so a
publish landing between that HEAD and the PUT is not detected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from manyfest import digest as digests
from manyfest import mediatypes
from manyfest import platform as platforms
from manyfest.content import Manifest
from manyfest.engine import Engine
from manyfest.errors import (
    InvalidManifestError,
    ManyfestError,
    NotFoundError,
    PlatformError,
    UnsupportedMediaTypeError,
    UsageError,
)
from manyfest.jsonfmt import escape_html
from manyfest.models import Descriptor, IndexDoc
from manyfest.ops.entries import Listed, attested_digest, check_unique_platforms
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.words import plural

# ---------------------------------------------------------------------- the change


@dataclass(frozen=True, slots=True)
class EntryChange:
    """What ``annotate`` changes in one entry (the same flags as the local ``annotate``).

    Attributes:
        os: new ``os`` ('' keeps it).
        arch: new ``architecture`` ('' keeps it).
        variant: new ``variant``; ``None`` keeps it unless ``arch`` changes the
            architecture (a variant belongs to its architecture: then it is cleared);
            ``""`` clears it.
        os_version: new ``os.version`` ('' keeps it).
        os_features: ``os.features`` added when not present yet.
        annotations: descriptor annotations set (``(key, value)``; a value may be '').
        remove_annotations: descriptor annotation keys removed (absent keys are ignored).
    """

    os: str = ""
    arch: str = ""
    variant: str | None = None
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    remove_annotations: tuple[str, ...] = field(default=())

    @property
    def touches_platform(self) -> bool:
        """True when a platform flag was given."""
        return bool(
            self.os or self.arch or self.os_version or self.os_features
            or self.variant is not None
        )


def annotated_platform(
    p: Platform | None, change: EntryChange, *, check: bool = True
) -> Platform:
    """The platform ``annotate`` makes of ``p`` (``None``: no platform yet).

    Args:
        p: the entry's platform now.
        change: the flags given.
        check: validate the result against the platform table (``False``: the caller
            applies ``--platform-check`` itself).

    Raises:
        PlatformError: ``check`` and the resulting os/arch pair or variant is not valid.
    """
    p = p or Platform("", "")
    features = list(p.os_features)
    for feature in change.os_features:
        if feature not in features:
            features.append(feature)
    variant = change.variant
    if variant is None:
        variant = p.variant if not change.arch or change.arch == p.architecture else ""
    new = Platform(
        change.os or p.os,
        change.arch or p.architecture,
        variant,
        change.os_version or p.os_version,
        tuple(features),
    )
    if check:
        platforms.validate(new.os, new.architecture, new.variant)
    return new


def annotated(annotations: dict[str, str], change: EntryChange) -> dict[str, str]:
    """``annotations`` with the change's keys set and removed (a new dict)."""
    out = dict(annotations)
    for key in change.remove_annotations:
        out.pop(key, None)
    out.update(change.annotations)
    return out


# ---------------------------------------------------------------------- JSON with spans

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_WS = re.compile(rb"[ \t\r\n]*")
_SCALAR = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")


@dataclass(frozen=True, slots=True)
class _Member:
    key: str
    key_start: int
    value_start: int
    value_end: int


@dataclass(frozen=True, slots=True)
class _Object:
    start: int  # the '{'
    end: int  # after the '}'
    members: list[_Member]


def _bad(what: str) -> InvalidManifestError:
    return InvalidManifestError(f"index is not valid JSON: {what}")


def _ws(data: bytes, pos: int) -> int:
    match = _WS.match(data, pos)
    assert match is not None  # `*` always matches
    return match.end()


def _string_end(data: bytes, pos: int) -> int:
    match = _STRING.match(data, pos)
    if match is None:
        raise _bad(f"expected a string at byte {pos}")
    return match.end()


def _skip_value(data: bytes, pos: int) -> int:
    """The end of the JSON value starting at ``pos`` (iterative: any nesting depth)."""
    depth = 0
    while True:
        pos = _ws(data, pos)
        char = data[pos : pos + 1]
        if char == b'"':
            pos = _string_end(data, pos)
        elif char in (b"{", b"["):
            depth += 1
            pos += 1
            continue
        elif char in (b"}", b"]"):
            depth -= 1
            pos += 1
        elif char in (b",", b":") and depth > 0:
            pos += 1
            continue
        else:
            match = _SCALAR.match(data, pos)
            if match is None or match.end() == pos:
                raise _bad(f"unexpected byte at {pos}")
            pos = match.end()
        if depth == 0:
            return pos


def _expect(data: bytes, pos: int, char: bytes) -> int:
    if data[pos : pos + 1] != char:
        raise _bad(f"expected {char.decode()!r} at byte {pos}")
    return pos + 1


def _object(data: bytes, pos: int) -> _Object:
    """The members of the object whose ``{`` is at ``pos``, with their byte spans."""
    start = pos
    pos = _ws(data, _expect(data, pos, b"{"))
    members: list[_Member] = []
    if data[pos : pos + 1] == b"}":
        return _Object(start, pos + 1, members)
    while True:
        key_start = _ws(data, pos)
        key_end = _string_end(data, key_start)
        key = msgspec.json.decode(data[key_start:key_end], type=str)
        value_start = _ws(data, _expect(data, _ws(data, key_end), b":"))
        value_end = _skip_value(data, value_start)
        members.append(_Member(key, key_start, value_start, value_end))
        pos = _ws(data, value_end)
        if data[pos : pos + 1] == b",":
            pos += 1
            continue
        return _Object(start, _expect(data, pos, b"}"), members)


def _array(data: bytes, pos: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` byte spans of the elements of the array whose ``[`` is at ``pos``."""
    pos = _ws(data, _expect(data, pos, b"["))
    spans: list[tuple[int, int]] = []
    if data[pos : pos + 1] == b"]":
        return spans
    while True:
        start = _ws(data, pos)
        end = _skip_value(data, start)
        spans.append((start, end))
        pos = _ws(data, end)
        if data[pos : pos + 1] == b",":
            pos += 1
            continue
        _expect(data, pos, b"]")
        return spans


def _last(obj: _Object, key: str) -> _Member | None:
    """The member named ``key`` (the last one: JSON decoders keep the last duplicate)."""
    found = None
    for member in obj.members:
        if member.key == key:
            found = member
    return found


def entry_spans(raw: bytes) -> list[tuple[int, int]]:
    """The byte spans ``(start, end)`` of the descriptors of an index's ``manifests``.

    Raises:
        InvalidManifestError: the bytes are not a JSON object with a ``manifests`` array.
    """
    top = _object(raw, _ws(raw, 0))
    member = _last(top, "manifests")
    if member is None or raw[member.value_start : member.value_start + 1] != b"[":
        raise _bad("no manifests array")
    return _array(raw, member.value_start)


# ---------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class _Style:
    """The document's layout: indentation unit (``None``: one line), colon, compact comma."""

    unit: bytes | None
    colon: bytes
    comma: bytes


def _style(raw: bytes) -> _Style:
    top = _object(raw, _ws(raw, 0))
    if not top.members:
        return _Style(None, b":", b",")
    first = top.members[0]
    lead = raw[top.start + 1 : first.key_start]
    unit = lead.rsplit(b"\n", 1)[1] if b"\n" in lead else None
    key_end = _string_end(raw, first.key_start)
    colon = raw[key_end : first.value_start] or b":"
    comma = b","
    if len(top.members) > 1:
        sep = raw[first.value_end : top.members[1].key_start]
        if b"\n" not in sep:
            comma = sep
    return _Style(unit, colon, comma)


def _member_indent(data: bytes, obj: _Object) -> bytes | None:
    """The indentation of a (non-empty) object's member lines; ``None`` when on one line."""
    lead = data[obj.start + 1 : obj.members[0].key_start]
    return lead.rsplit(b"\n", 1)[1] if b"\n" in lead else None


_Value = str | list[str] | dict[str, str] | dict[str, str | list[str]]
_EMPTY: dict[type, object] = {str: "", list: []}


def _encode(value: str) -> bytes:
    return escape_html(msgspec.json.encode(value))


def _format(value: _Value, indent: bytes | None, style: _Style) -> bytes:
    """A new value for a member on a line indented ``indent`` (``None``: one line)."""
    if isinstance(value, str):
        return _encode(value)
    inner = None if indent is None or style.unit is None else indent + style.unit
    if isinstance(value, list):
        items, brackets = [_encode(v) for v in value], (b"[", b"]")
    else:
        items = [_encode(k) + style.colon + _format(v, inner, style) for k, v in value.items()]
        brackets = (b"{", b"}")
    if not items:
        return brackets[0] + brackets[1]
    if inner is None or indent is None:
        return brackets[0] + style.comma.join(items) + brackets[1]
    return (brackets[0] + b"\n" + inner + (b",\n" + inner).join(items) + b"\n" + indent
            + brackets[1])


@dataclass(frozen=True, slots=True)
class _Raw:
    """An already-encoded member value."""

    text: bytes


_Update = _Value | _Raw | None  # None: delete the member
_Later = Callable[[str, str], bool]  # later(existing_key, new_key): new goes before existing


def _rebuild(
    data: bytes, obj: _Object, updates: dict[str, _Update], later: _Later, style: _Style
) -> bytes | None:
    """The object's text with ``updates`` applied; ``None`` when no member is left.

    Members kept keep their bytes, and so do the separators between members that stay
    neighbours; a new member is inserted before the first existing key ``later`` says comes
    after it.
    """
    indent = _member_indent(data, obj)
    last = {m.key: i for i, m in enumerate(obj.members)}
    items: list[tuple[str, bytes, int | None]] = []
    for i, m in enumerate(obj.members):
        update = updates.get(m.key, _KEEP) if last[m.key] == i else _KEEP
        if update is _KEEP:
            items.append((m.key, data[m.key_start : m.value_end], i))
        elif update is not None:
            items.append((m.key, data[m.key_start : m.value_start] + _text(update, indent,
                                                                          style), i))
    for key, update in updates.items():
        if key in last or update is None:
            continue
        text = _encode(key) + style.colon + _text(update, indent, style)
        at = next((j for j, item in enumerate(items) if later(item[0], key)), len(items))
        items.insert(at, (key, text, None))
    if not items:
        return None
    ms = obj.members
    if len(ms) > 1:
        typical = data[ms[0].value_end : ms[1].key_start]
    else:
        typical = b",\n" + indent if indent is not None else style.comma
    out = [b"{", data[obj.start + 1 : ms[0].key_start]]
    for j, (_, text, origin) in enumerate(items):
        if j:
            before = items[j - 1][2]
            if origin is not None and before is not None and origin == before + 1:
                out.append(data[ms[before].value_end : ms[origin].key_start])
            else:
                out.append(typical)
        out.append(text)
    out += [data[ms[-1].value_end : obj.end - 1], b"}"]
    return b"".join(out)


_KEEP = _Raw(b"")  # sentinel: the member is not updated


def _text(update: _Value | _Raw, indent: bytes | None, style: _Style) -> bytes:
    return update.text if isinstance(update, _Raw) else _format(update, indent, style)


def _ranked(order: tuple[str, ...]) -> _Later:
    rank = {key: i for i, key in enumerate(order)}

    def later(existing: str, new: str) -> bool:
        return existing in rank and new in rank and rank[existing] > rank[new]

    return later


_DESCRIPTOR_ORDER = ("mediaType", "digest", "size", "urls", "annotations", "data", "platform",
                     "artifactType")
"""Where a new descriptor member goes: the order of image-spec's Go ``Descriptor``
(annotations before platform, as buildx writes; docker's mediaType/size/digest/platform
order puts it before platform too)."""
_PLATFORM_ORDER = ("architecture", "os", "os.version", "os.features", "variant", "features")
"""Platform keys as the Docker list and the OCI index write them."""


def _sorted_keys(obj: _Object) -> _Later:
    keys = [m.key for m in obj.members]
    if keys != sorted(keys):
        return lambda existing, new: False  # not sorted: append
    return lambda existing, new: existing > new


def _platform_values(p: Platform) -> dict[str, str | list[str]]:
    return {"architecture": p.architecture, "os": p.os, "os.version": p.os_version,
            "os.features": list(p.os_features), "variant": p.variant}


_DESCRIPTOR = msgspec.json.Decoder(Descriptor)


def descriptor_platform(desc: Descriptor) -> Platform | None:
    """The :class:`Platform` of a decoded descriptor (``None`` when it has none)."""
    p = desc.platform
    if p is None:
        return None
    return Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))


def rewrite_entry(raw: bytes, position: int, change: EntryChange, *, check: bool = True) -> bytes:
    """An index's bytes with the descriptor at ``position`` of ``manifests`` changed.

    Everything outside that descriptor is returned byte for byte; inside it, only the
    values that change are encoded (see the module docstring). When nothing changes,
    ``raw`` itself is returned.

    Args:
        raw: the index's exact bytes (a JSON object with a ``manifests`` array).
        position: the index of the descriptor in ``manifests`` (0-based).
        change: what to set (platform fields, annotations).
        check: validate the resulting platform (``False``: the caller has applied
            ``--platform-check``).

    Raises:
        InvalidManifestError: ``raw`` is not an index (or ``position`` is out of range).
        PlatformError: ``check`` and the resulting platform is not a valid os/arch/variant.
    """
    spans = entry_spans(raw)
    if not 0 <= position < len(spans):
        raise InvalidManifestError(f"index has no entry {position} ({len(spans)} "
                                   f"entr{'y' if len(spans) == 1 else 'ies'})")
    start, end = spans[position]
    if raw[start : start + 1] != b"{":
        raise _bad(f"entry {position} is not an object")
    style = _style(raw)
    desc_obj = _object(raw, start)
    try:
        desc = _DESCRIPTOR.decode(raw[start:end])
    except msgspec.DecodeError as exc:
        raise InvalidManifestError(f"index entry {position} is not a descriptor: {exc}") from exc
    updates: dict[str, _Update] = {}
    if change.touches_platform:
        old = descriptor_platform(desc)
        new_values = _platform_values(annotated_platform(old, change, check=check))
        old_values = _platform_values(old) if old is not None else {}
        changed: dict[str, _Update] = {}
        for key, value in new_values.items():
            if old_values.get(key, _EMPTY[type(value)]) != value:
                changed[key] = value or None  # an empty value: the key is omitted
        if changed:
            existing = _nested(raw, _last(desc_obj, "platform"))
            if existing is not None and existing.members:
                text = _rebuild(raw, existing, changed, _ranked(_PLATFORM_ORDER), style)
                updates["platform"] = _Raw(text or b"{}")
            else:
                fresh: dict[str, str | list[str]] = {k: v for k, v in new_values.items() if v}
                updates["platform"] = fresh
    old_annotations = desc.annotations
    new_annotations = annotated(old_annotations, change)
    if new_annotations != old_annotations:
        a_changes: dict[str, _Update] = {k: None for k in old_annotations
                                          if k not in new_annotations}
        a_changes.update({k: v for k, v in new_annotations.items()
                          if old_annotations.get(k) != v})
        member = _last(desc_obj, "annotations")
        existing = _nested(raw, member)
        if existing is not None and existing.members:
            text = _rebuild(raw, existing, a_changes, _sorted_keys(existing), style)
            updates["annotations"] = None if text is None else _Raw(text)
        else:
            updates["annotations"] = dict(sorted(new_annotations.items()))
    if not updates:
        return raw
    text = _rebuild(raw, desc_obj, updates, _ranked(_DESCRIPTOR_ORDER), style)
    assert text is not None  # digest and size are never removed
    return raw[:start] + text + raw[end:]


def _nested(raw: bytes, member: _Member | None) -> _Object | None:
    """The object a member's value is (``None``: absent, or not an object)."""
    if member is None or raw[member.value_start : member.value_start + 1] != b"{":
        return None
    return _object(raw, member.value_start)


# ---------------------------------------------------------------------- the operation


@dataclass(frozen=True, slots=True)
class RemoteAnnotation:
    """What ``annotate --remote`` did.

    Attributes:
        target: the list's reference (its tag).
        entry: the digest of the changed entry.
        old_digest: the index's digest before.
        digest: the index's digest now (equal to ``old_digest`` when nothing changed).
        changed: False when the entry already had every value asked for (nothing written).
    """

    target: Reference
    entry: str
    old_digest: str
    digest: str
    changed: bool


def _describe(desc: Descriptor) -> str:
    p = descriptor_platform(desc)
    return f"{desc.digest} ({p if p is not None else 'no platform'})"


def _entries_text(doc: IndexDoc) -> str:
    return ", ".join(_describe(d) for d in doc.manifests) or "none"


def _looks_like_platform(text: str) -> Platform | None:
    """``os/arch[/variant]`` with a known os/arch pair, else ``None`` (a reference)."""
    try:
        wanted = platforms.parse(text)
    except PlatformError:
        return None
    norm = platforms.normalize(wanted)
    return wanted if (norm.os, norm.architecture) in platforms.VALID_OS_ARCH else None


async def pick_entry(engine: Engine, list_ref: Reference, doc: IndexDoc, entry: str) -> int:
    """The position in ``doc.manifests`` of the entry ``entry`` names.

    ``entry`` is a digest (``sha256:...``), a platform ``os/arch[/variant]`` (a known os/arch
    pair: ``linux/arm64``; to name a repository spelled like that, write its registry:
    ``docker.io/linux/arm64``), or a reference whose digest is an entry (a tag is HEADed).

    Raises:
        ManyfestError: no entry, or more than one, is what ``entry`` names (the entries are
            listed).
        NotFoundError: a reference that does not exist.
        UsageError: a reference on another registry than the list's whose registry is not
            written out (``unknown/unknown`` is Docker Hub's: not looked up).
        InvalidReferenceError: ``entry`` is none of the three forms.
    """
    from manyfest import reference as references

    wanted = _looks_like_platform(entry)
    if wanted is not None:
        found = [i for i, d in enumerate(doc.manifests)
                 if platforms.matches(descriptor_platform(d), wanted)]
        what = f"platform {entry}"
    else:
        if entry.partition(":")[0] in ("sha256", "sha512") and digests.is_valid(entry):
            dgst = entry
        else:
            ref = references.parse(entry)
            first = entry.split("/", 1)[0]
            written = "/" in entry and ("." in first or ":" in first or first == "localhost")
            if not references.same_registry(ref.registry, list_ref.registry) and not written:
                # A registry only implied (docker.io): never asked. One written out is: an
                # entry copied from it keeps its digest (crane and regctl take any reference).
                raise UsageError(
                    f"{entry} names a manifest on {ref.registry}, not on {list_ref.registry} "
                    f"where {list_ref} is; its entries: {_entries_text(doc)}",
                    hint="name the entry by digest, by os/arch[/variant], or by a reference "
                    f"on {list_ref.registry} (attestation entries, unknown/unknown, by digest)",
                )
            if ref.digest:
                dgst = ref.digest
            else:
                head = await engine.client.head_manifest(ref)
                if head is None:
                    raise NotFoundError(f"no such manifest: {ref}", status=404, method="HEAD",
                                        url="", hint="check the reference, or name the entry "
                                        "by digest")
                dgst = head.digest
        found = [i for i, d in enumerate(doc.manifests) if d.digest == dgst]
        what = entry if entry == dgst else f"{entry} ({dgst})"
    if not found:
        raise ManyfestError(
            f"{what} is not an entry of {list_ref}; its entries: {_entries_text(doc)}",
            hint="name one of the entries by digest or platform",
        )
    if len(found) > 1:
        listed = ", ".join(f"#{i + 1} {_describe(doc.manifests[i])}" for i in found)
        raise ManyfestError(
            f"{what} names {plural(len(found), 'entry')} of {list_ref}: {listed}",
            hint="name the entry by digest"
            if wanted is not None else "the index lists this digest twice: publish it again",
        )
    return found[0]


async def annotate_remote(
    engine: Engine,
    list_ref: Reference,
    entry: str,
    change: EntryChange,
    *,
    platform_check: str = "",
    allow_duplicate_platforms: bool = False,
    warn: Callable[[str], None] | None = None,
) -> RemoteAnnotation:
    """Rewrite one entry of the remote index at ``list_ref``'s tag and PUT it back.

    Requests: GET the index by tag; HEAD ``entry`` when it is a tag; HEAD the tag again;
    PUT the index at the tag. No child or blob is read or written.

    A platform change follows the local ``annotate``'s rules: the new platform goes through
    :func:`manyfest.platform.enforce` under ``platform_check`` (default: refused when not
    in the table), and the entry may not get the platform of another image of the index
    (:func:`~manyfest.ops.entries.check_unique_platforms`; attestations never count) unless
    ``allow_duplicate_platforms``. Entries are named ``<repository>@<digest>``.

    Raises:
        UsageError: ``list_ref`` names a digest, or annotations are set on a Docker list.
        UnsupportedMediaTypeError: ``list_ref`` is not an index / manifest list.
        ManyfestError: ``entry`` is not one entry of the index; the tag moved between the
            GET and the PUT (nothing written).
        PlatformError: the resulting platform is not valid, or another image of the index
            has it (nothing written).
        RegistryError, TransportError: a request failed; the tag is where it was.
    """
    if list_ref.digest or not list_ref.tag:
        raise UsageError(
            f"manifest list {list_ref} must be named by a tag, not a digest",
            hint="annotate rewrites the index and puts it back at its tag",
        )
    manifest = await engine.client.get_manifest(list_ref)
    if not manifest.is_index:
        raise UnsupportedMediaTypeError(
            f"{list_ref} is not a manifest list or index (it is {manifest.media_type})",
            hint="name a multi-platform list; to change a local list, drop --remote",
        )
    doc = manifest.index()
    position = await pick_entry(engine, list_ref, doc, entry)
    desc = doc.manifests[position]
    adds = {k: v for k, v in change.annotations if desc.annotations.get(k) != v}
    if adds and manifest.media_type == mediatypes.DOCKER_LIST:
        raise UsageError(
            f"{list_ref} is a Docker manifest list ({mediatypes.DOCKER_LIST}), whose entries "
            f"have no annotations: cannot set {', '.join(sorted(adds))}",
            hint="publish the list as an OCI index (application/vnd.oci.image.index.v1+json) "
            "to carry descriptor annotations",
        )
    if change.touches_platform:
        _check_platform(list_ref, doc, position, change, platform_check,
                        allow_duplicate_platforms, warn)
    raw = rewrite_entry(manifest.raw, position, change, check=False)
    if raw == manifest.raw:
        return RemoteAnnotation(list_ref, desc.digest, manifest.digest, manifest.digest, False)
    new = Manifest(raw, manifest.media_type, digests.sha256(raw))
    head = await engine.client.head_manifest(list_ref, push=True)
    now = head.digest if head is not None else ""
    if now != manifest.digest:
        raise ManyfestError(
            f"{list_ref} moved while annotating: it pointed at {manifest.digest}, now at "
            f"{now or 'nothing'}; nothing was written",
            hint="someone else published it meanwhile: re-run annotate to change the new list",
        )
    await engine.put_manifest(list_ref, new)
    return RemoteAnnotation(list_ref, desc.digest, manifest.digest, new.digest, True)


def _check_platform(
    list_ref: Reference,
    doc: IndexDoc,
    position: int,
    change: EntryChange,
    mode: str,
    allow_duplicates: bool,
    warn: Callable[[str], None] | None,
) -> None:
    """The platform rules for the entry at ``position`` once ``change`` is applied."""
    desc = doc.manifests[position]
    new = annotated_platform(descriptor_platform(desc), change, check=False)
    name = f"{list_ref.name}@{desc.digest}"
    platforms.enforce(new, mode=mode, written=True, name=name, warn=warn or _ignore)
    listed = []
    for i, d in enumerate(doc.manifests):
        p = new if i == position else descriptor_platform(d)
        listed.append(Listed(f"{list_ref.name}@{d.digest}", p,
                             bool(attested_digest(p, d.annotations))))
    check_unique_platforms(listed, allow=allow_duplicates, changed={name})


def _ignore(message: str) -> None:
    """The default warning sink: drops the message."""
