"""``docker manifest inspect``: print an image manifest or a manifest list as docker does.

Behaviour follows docker/cli ``cli/command/manifest/inspect.go`` (a local list first, else the
remote manifest; tab-indented JSON; ``-v``'s ``ImageManifest`` shape), with one documented
difference: ``inspect`` of a remote list whose information docker's rebuilt list would drop
(annotations, nested indexes, artifact fields) prints the registry's exact bytes.

Beyond docker:

* ``--raw``: the exact bytes the registry served (:func:`inspect_raw`); for a local list, the
  bytes ``push`` would write;
* ``--platform os/arch[/variant]``: one child of a list, chosen as docker's and containerd's
  ``--platform`` does (:func:`manyfest.platform.matches`; several matching: the exact variant
  first, then list order), printed as an image is; on an image, its platform must match;
* ``--format json|table|TEMPLATE``: ``json`` is docker's output; ``table`` one row per entry;
  a template (:mod:`manyfest.template`) is printed once per entry. Attestation entries
  (``vnd.docker.reference.type: attestation-manifest``) are labelled, never platforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import msgspec

from manyfest import jsonfmt, mediatypes
from manyfest.content import Entry, Manifest, encode_list
from manyfest.errors import NoMatchingPlatformError, UsageError
from manyfest.mediatypes import ATTESTATION, REFERENCE_DIGEST, REFERENCE_TYPE
from manyfest.models import Descriptor
from manyfest.platform import Platform, matches, normalize
from manyfest.reference import Reference
from manyfest.store import ManifestStore, StoredImage
from manyfest.template import Template, Value
from manyfest.template import parse as parse_template

if TYPE_CHECKING:  # the engine is imported where it is used: --format is checked without it
    from manyfest.engine import Engine

FIELDS = (
    "Ref", "Digest", "Size", "MediaType", "Platform", "Attestation", "AttestationFor",
    "Annotations",
)
"""The fields a ``--format`` template may name (``{{.Ref}}``...), in ``{{json .}}``'s order."""

InspectFormat = Literal["json", "table"] | Template
"""What ``--format`` asks for: docker's JSON, a table, or a parsed template."""

TABLE_COLUMNS = ("PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE", "ATTESTATION", "ANNOTATIONS")
"""The columns of ``--format table``."""


def parse_format(text: str) -> InspectFormat:
    """``--format``'s value: ``json``, ``table``, or a template over :data:`FIELDS`.

    Raises:
        UsageError: the text is none of these (no ``{{...}}`` action), or the template names
            an unknown field or uses an action the template language does not have.
    """
    if text == "json":
        return "json"
    if text == "table":
        return "table"
    if "{{" not in text:
        raise UsageError(
            f"--format {text!r}: expected json, table or a template such as "
            "'{{.Platform}}\\t{{.Digest}}'",
            hint="the template fields are " + ", ".join(f".{f}" for f in FIELDS),
        )
    return parse_template(text, FIELDS)


def check_options(*, verbose: bool, raw: bool, format: InspectFormat) -> None:  # noqa: A002
    """Refuse combinations of inspect options that mean nothing together.

    Raises:
        UsageError: ``raw`` with ``verbose`` or a non-json ``format``; ``verbose`` with a
            ``table`` or template format.
    """
    if raw and verbose:
        raise UsageError("--raw and -v cannot be used together",
                         hint="--raw prints the manifest's exact bytes; drop one of them")
    if raw and format != "json":
        raise UsageError("--raw and --format cannot be used together",
                         hint="--raw prints the manifest's exact bytes; drop one of them")
    if verbose and format != "json":
        raise UsageError("-v only applies to --format json",
                         hint="drop -v, or use --format json")


# ---------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class Row:
    """One entry of a list (or one image) as ``--format table`` and templates show it.

    Attributes:
        ref: the entry's reference (``name@digest`` for a remote list's child; the image
            reference a local entry was created from).
        digest: the entry's digest.
        size: the entry's size in bytes, as its descriptor states.
        media_type: the entry's media type.
        platform: the entry's platform (``None`` when its descriptor has none).
        annotations: descriptor annotations (an image's own ``annotations``), sorted by key.
    """

    ref: str
    digest: str
    size: int
    media_type: str
    platform: Platform | None
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def attestation_for(self) -> str:
        """For an attestation entry, the digest of the image it describes ('' otherwise)."""
        return dict(self.annotations).get(REFERENCE_DIGEST, "") if self.is_attestation else ""

    @property
    def is_attestation(self) -> bool:
        """True for an attestation manifest entry (buildx: ``vnd.docker.reference.type:
        attestation-manifest``, or ``unknown/unknown`` with a ``vnd.docker.reference.digest``),
        as :meth:`manyfest.engine.Engine.resolve` tells them apart."""
        notes = dict(self.annotations)
        if notes.get(REFERENCE_TYPE) == ATTESTATION:
            return True
        return self.platform is not None and self.platform.is_unknown and (
            REFERENCE_DIGEST in notes
        )

    def values(self) -> dict[str, Value]:
        """Every template field's text and JSON value."""
        p = self.platform
        notes = dict(self.annotations)
        return {
            "Ref": Value(self.ref, self.ref),
            "Digest": Value(self.digest, self.digest),
            "Size": Value(str(self.size), self.size),
            "MediaType": Value(self.media_type, self.media_type),
            "Platform": Value("" if p is None else str(p), None if p is None else _oci(p)),
            "Attestation": Value("true" if self.is_attestation else "false",
                                 self.is_attestation),
            "AttestationFor": Value(self.attestation_for, self.attestation_for),
            "Annotations": Value(",".join(f"{k}={v}" for k, v in self.annotations), notes),
        }

    def cells(self) -> tuple[str, ...]:
        """The row's ``--format table`` cells (``-`` where there is nothing)."""
        p = self.platform
        if self.is_attestation:
            marker = f"attestation of {self.attestation_for}" if self.attestation_for \
                else "attestation"
        else:
            marker = "-"
        notes = ",".join(f"{k}={v}" for k, v in self.annotations)
        return tuple(
            _cell(c)
            for c in (
                "-" if p is None else str(p), self.digest, str(self.size),
                self.media_type or "-", marker, notes or "-",
            )
        )


def _oci(p: Platform) -> dict[str, object]:
    """A platform as the OCI ``platform`` object (empty optional fields omitted)."""
    out: dict[str, object] = {"architecture": p.architecture, "os": p.os}
    if p.os_version:
        out["os.version"] = p.os_version
    if p.os_features:
        out["os.features"] = list(p.os_features)
    if p.variant:
        out["variant"] = p.variant
    return out


def _cell(text: str) -> str:
    """A table cell on one line: tabs, newlines and carriage returns written as escapes."""
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def format_rows(rows: Sequence[Row], format: Literal["table"] | Template) -> str:  # noqa: A002
    """Rows as ``--format table`` (a header, then one aligned line per row, as docker's
    tabwriter with minimum width 10 and padding 3) or a template (one line per row)."""
    if isinstance(format, Template):
        return "".join(format.render(row.values()) + "\n" for row in rows)
    table = [TABLE_COLUMNS, *(row.cells() for row in rows)]
    widths = [max(10, max(len(line[i]) for line in table) + 3) for i in range(len(TABLE_COLUMNS))]
    lines = []
    for line in table:
        head = "".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False))
        lines.append(head + line[-1])
    return "\n".join(lines) + "\n"


def _stored_row(image: StoredImage) -> Row:
    m = image.manifest
    return Row(str(image.ref), m.digest, m.size, m.media_type, image.platform,
               tuple(sorted(image.annotations)))


def _platform_of(desc: Descriptor) -> Platform | None:
    p = desc.platform
    if p is None:
        return None
    return Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))


def _descriptor_row(ref: Reference, desc: Descriptor) -> Row:
    return Row(str(ref.with_digest(desc.digest)), desc.digest, desc.size, desc.media_type,
               _platform_of(desc), tuple(sorted(desc.annotations.items())))


class _Annotated(msgspec.Struct):
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


def _own_annotations(manifest: Manifest) -> tuple[tuple[str, str], ...]:
    """An image manifest's own ``annotations`` (none when absent or not a string map)."""
    try:
        doc = msgspec.json.decode(manifest.raw, type=_Annotated)
    except msgspec.DecodeError:
        return ()
    return tuple(sorted(doc.annotations.items()))


# ---------------------------------------------------------------------- platform


def choose(ref: Reference, rows: Sequence[Row], wanted: Platform) -> int:
    """The index of the entry ``--platform wanted`` picks, as docker's ``--platform`` does.

    An entry matches per :func:`manyfest.platform.matches` (attestations never do). Among
    several, one whose variant is ``wanted``'s exactly (after normalisation: ``linux/arm64``
    asks for ``v8``) comes first, then list order.

    Raises:
        NoMatchingPlatformError: no entry matches (the message names ``ref``, ``wanted`` and
            the platforms the list has, attestations not counted).
    """
    w = normalize(wanted)
    found = [
        (normalize(row.platform).variant != w.variant, i)
        for i, row in enumerate(rows)
        if row.platform is not None and not row.is_attestation and matches(row.platform, wanted)
    ]
    if found:
        return min(found)[1]
    has: list[str] = []
    for row in rows:
        p = row.platform
        if p is not None and not p.is_unknown and not row.is_attestation and str(p) not in has:
            has.append(str(p))
    what = f"its platforms are {', '.join(has)}" if has else "it has no platforms"
    raise NoMatchingPlatformError(f"no manifest for {wanted} in {ref}: {what}")


def _check_image(ref: Reference, platform: Platform | None, wanted: Platform) -> None:
    """An image asked for with ``--platform``: its platform must match.

    Raises:
        NoMatchingPlatformError: it does not (the message names both platforms).
    """
    if not matches(platform, wanted):
        what = "an image with no platform" if platform is None else f"an image for {platform}"
        raise NoMatchingPlatformError(f"no manifest for {wanted} in {ref}: it is {what}")


# ---------------------------------------------------------------------- inspect


async def inspect(
    engine: Engine,
    store: ManifestStore,
    ref: Reference,
    *,
    list_ref: Reference | None = None,
    verbose: bool = False,
    platform: Platform | None = None,
    format: InspectFormat = "json",  # noqa: A002
) -> str:
    """``docker manifest inspect [-v] [LIST] REF``: the text docker prints (``format`` json).

    Order as docker: with ``list_ref``, the local entry; else a local list named ``ref``;
    else the remote manifest (an image, or a list whose children are fetched concurrently
    for ``-v``).

    Args:
        engine: the run's engine (its client reads the registry).
        store: the local list store.
        ref: the manifest (or local list) to show.
        list_ref: show the entry ``ref`` of this local list.
        verbose: docker's ``-v`` (``ImageManifest`` objects: platform, layers).
        platform: pick this child of a list (see :func:`choose`) and show it as an image; on
            an image, its platform must match.
        format: ``json`` (docker's output), ``table`` (one row per entry, one for an image)
            or a :class:`~manyfest.template.Template` (rendered once per entry).

    Raises:
        UsageError: ``verbose`` with a ``table`` or template format.
        NoSuchManifestError: the local list or entry does not exist.
        NotFoundError: the remote manifest does not exist.
        NoMatchingPlatformError: ``platform`` matches no entry (or not the image).
    """
    check_options(verbose=verbose, raw=False, format=format)
    if list_ref is not None:
        image = store.get(list_ref, ref)
        if platform is not None:
            _check_image(ref, image.platform, platform)
        return _show_stored(image, store, verbose, format)
    if store.exists(ref):
        images = store.get_list(ref)
        if platform is not None:
            chosen = images[choose(ref, [_stored_row(i) for i in images], platform)]
            return _show_stored(chosen, store, verbose, format)
        if format == "json":
            return format_list(images, store, verbose=verbose)
        return format_rows([_stored_row(i) for i in images], format)
    manifest = await engine.client.get_manifest(ref)
    if manifest.is_index:
        return await _remote_list(engine, store, ref, manifest, verbose, platform, format)
    if format == "json" and not verbose and platform is None:
        return jsonfmt.indent(manifest.raw).decode() + "\n"
    image_platform = await _image_platform(engine, ref, manifest)
    if platform is not None:
        _check_image(ref, image_platform, platform)
    if format == "json":
        if not verbose:
            return jsonfmt.indent(manifest.raw).decode() + "\n"
        return format_image(StoredImage(ref, manifest, image_platform), store, verbose=True)
    row = Row(str(ref), manifest.digest, manifest.size, manifest.media_type, image_platform,
              _own_annotations(manifest))
    return format_rows([row], format)


async def inspect_raw(
    engine: Engine,
    store: ManifestStore,
    ref: Reference,
    *,
    list_ref: Reference | None = None,
    platform: Platform | None = None,
) -> bytes:
    """``inspect --raw``: the exact bytes the registry served for ``ref``.

    A local entry (``list_ref``): its manifest's bytes. A local list: the bytes ``push``
    would write (:func:`~manyfest.ops.manifests.build_local_list`). With ``platform``: the
    bytes of the child chosen as in :func:`inspect` (a remote child is fetched by digest and
    checked against it).

    Raises:
        NoSuchManifestError, NotFoundError, NoMatchingPlatformError: as :func:`inspect`.
        UsageError: a local list ``push`` would refuse.
    """
    if list_ref is not None:
        image = store.get(list_ref, ref)
        if platform is not None:
            _check_image(ref, image.platform, platform)
        return image.manifest.raw
    if store.exists(ref):
        images = store.get_list(ref)
        if platform is None:
            from manyfest.ops.manifests import build_local_list

            return (await build_local_list(engine, store, ref)).listed.raw
        return images[choose(ref, [_stored_row(i) for i in images], platform)].manifest.raw
    manifest = await engine.client.get_manifest(ref)
    if platform is None:
        return manifest.raw
    if manifest.is_index:
        index = manifest.index()
        desc = index.manifests[choose(ref, [_descriptor_row(ref, d) for d in index.manifests],
                                      platform)]
        return (await engine.client.get_manifest(ref.with_digest(desc.digest))).raw
    _check_image(ref, await _image_platform(engine, ref, manifest), platform)
    return manifest.raw


def _show_stored(
    image: StoredImage, store: ManifestStore, verbose: bool, format: InspectFormat  # noqa: A002
) -> str:
    if format == "json":
        return format_image(image, store, verbose=verbose)
    return format_rows([_stored_row(image)], format)


async def _image_platform(engine: Engine, ref: Reference, manifest: Manifest) -> Platform | None:
    """An image's platform, from its config (``None`` for what is not an image manifest)."""
    if not mediatypes.is_image(manifest.media_type):
        return None
    return (await engine.resolve(ref.with_digest(manifest.digest))).platform


def _child_image(ref: Reference, desc: Descriptor, child: Manifest) -> StoredImage:
    """A remote list's child as docker's ``-v`` shows it (named ``name:tag@digest``)."""
    return StoredImage(ref, child, _platform_of(desc), tuple(sorted(desc.annotations.items())))


async def _remote_list(
    engine: Engine,
    store: ManifestStore,
    ref: Reference,
    manifest: Manifest,
    verbose: bool,
    platform: Platform | None,
    format: InspectFormat,  # noqa: A002
) -> str:
    index = manifest.index()
    rows = [_descriptor_row(ref, d) for d in index.manifests]
    if platform is not None:
        i = choose(ref, rows, platform)
        if format != "json":
            return format_rows([rows[i]], format)
        desc = index.manifests[i]
        # docker names a remote list's children name:tag@digest (tag kept).
        child_ref = Reference(ref.registry, ref.repository, ref.tag, desc.digest)
        child = await engine.client.get_manifest(child_ref)
        if not verbose:
            return jsonfmt.indent(child.raw).decode() + "\n"
        return format_image(_child_image(child_ref, desc, child), store, verbose=True)
    if format != "json":
        return format_rows(rows, format)
    if not verbose and _loses_information(manifest):
        return manifest.raw.decode() + ("" if manifest.raw.endswith(b"\n") else "\n")
    children: dict[int, StoredImage] = {}

    async def fetch(i: int) -> None:
        desc = index.manifests[i]
        # docker names a remote list's children name:tag@digest (tag kept).
        child_ref = Reference(ref.registry, ref.repository, ref.tag, desc.digest)
        children[i] = _child_image(child_ref, desc, await engine.client.get_manifest(child_ref))

    from manyfest.engine import run_all

    await run_all(*(partial(fetch, i) for i in range(len(index.manifests))))
    images = [children[i] for i in range(len(index.manifests))]
    return format_list(images, store, verbose=verbose)


# ---------------------------------------------------------------------- docker's output


def _docker_list(images: list[StoredImage]) -> Manifest:
    """The list docker's ``FromDescriptors`` builds from entries (annotations dropped)."""
    entries = [
        Entry(i.manifest.media_type, i.manifest.size, i.manifest.digest, i.platform)
        for i in images
    ]
    return encode_list(entries)


def format_image(image: StoredImage, store: ManifestStore, *, verbose: bool) -> str:
    """docker's ``printManifest``: the manifest tab-indented, or ``-v``'s ImageManifest."""
    if verbose:
        return jsonfmt.indent(store.encode(image)).decode() + "\n"
    return jsonfmt.indent(image.manifest.raw).decode() + "\n"


def format_list(images: list[StoredImage], store: ManifestStore, *, verbose: bool) -> str:
    """docker's ``printManifestList``: the rebuilt list, or ``-v``'s array of ImageManifest."""
    if verbose:
        body = b"[" + b",".join(store.encode(i) for i in images) + b"]"
        return jsonfmt.indent(body).decode() + "\n"
    return _docker_list(images).raw.decode() + "\n"


def _loses_information(manifest: Manifest) -> bool:
    """True when docker's rebuilt list would drop something this index holds."""
    try:
        doc = msgspec.json.decode(manifest.raw)
    except msgspec.DecodeError:
        return True
    if not isinstance(doc, dict):
        return True
    if set(doc) - {"schemaVersion", "mediaType", "manifests"}:
        return True
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict) or set(entry) - {"mediaType", "size", "digest", "platform"}:
            return True
        if entry.get("mediaType") in mediatypes.INDEX_TYPES:
            return True
        platform = entry.get("platform") or {}
        if set(platform) - {"architecture", "os", "os.version", "os.features", "variant"}:
            return True
    return False
