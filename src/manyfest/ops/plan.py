"""Publish plans: manifest-tool's YAML spec, compact matrix documents, and from-args lists.

A plan file holds any number of YAML documents, each of one of two kinds (a file may mix
them). A manifest-tool document (estesp/manifest-tool ``v2/pkg/types``) is one list::

    image: registry/repo:tag          # the target list
    tags: ["1.0", "latest"]           # extra tags (optional)
    annotations: {key: value}         # index annotations (optional; OCI index only)
    attestations: keep                # or drop: index sources' attestations (optional)
    allow_duplicate_platforms: false  # true: two images may share a platform (optional)
    media_type: auto                  # auto (docker's first-entry rule), oci or docker
    artifact_type: application/x.y    # the index's artifactType (optional; OCI index only)
    subject: registry/repo@sha256:... # the index's subject (optional; OCI index only)
    labels_to_annotations: true       # copy common org.opencontainers.image.* labels
    manifests:
      - image: registry/repo-arm:tag  # a source image
        platform:                     # optional override
          architecture: arm
          os: linux
          variant: v7
          os.version: "10.0.17763"    # or osversion (manifest-tool's spelling)
          os.features: [win32k]       # or osfeatures

A compact document (one with a ``matrix`` key) is many lists: one per combination of the
matrix values (cartesian product, keys in order, then values in order), every other string
templated with :meth:`str.format_map` (see :func:`parse_documents`)::

    matrix: {version: ["1.0", "2.0"], flavor: ["", "-alpine"]}
    image: registry/app:{version}{flavor}
    tags: ["{version}{flavor}-stable"]                  # optional
    annotations: {org.opencontainers.image.version: "{version}"}   # optional
    platforms: [linux/amd64, linux/arm/v7]
    template: registry/app-{os}-{arch}{variant}:{version}{flavor}
    # or, instead of platforms + template, manifests: [...] as above, templated
    aliases: {version: version, suffix: flavor}         # optional: floating aliases

``aliases`` marks a matrix key as a version: ``{major}``, ``{minor}`` and ``{patch}`` become
placeholders of every template, and each alias template (``aliases.tags``, default
``{major}.{minor}{suffix}``, ``{major}{suffix}``, ``{latest}``) goes to the highest version
of its group only (:mod:`manyfest.ops.aliases`).

:func:`from_args` builds the one list of manifest-tool's ``push from-args``.

Loading: PyYAML's ``BaseLoader`` via ``load_all`` (every scalar stays the string written, so
tags ``1.10`` and ``010`` and ``architecture: 386`` keep their text), then ``msgspec.convert``
into Structs that forbid unknown keys; errors name the document and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
import string
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml

from manyfest import reference
from manyfest.errors import InvalidReferenceError, PlanError, PlatformError, UsageError
from manyfest.ops import aliases as versions
from manyfest.ops.entries import ATTESTATION_CHOICES, Attestations
from manyfest.platform import CHECK_MODES, Platform, normalize, parse, validate
from manyfest.reference import Reference, registry_key


class PlatformSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A platform override in a plan entry; empty fields come from the image config."""

    architecture: str = ""
    os: str = ""
    variant: str = ""
    os_version: str = msgspec.field(name="os.version", default="")
    os_features: list[str] = msgspec.field(name="os.features", default_factory=list)


class ManifestSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One source entry: an image reference and an optional platform override."""

    image: str
    platform: PlatformSpec | None = None


class ListKeys(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The keys a manifest-tool document and a compact document share: a list's tags and
    settings (see :class:`PlanList`)."""

    tags: list[str] = msgspec.field(default_factory=list)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    require_platforms: list[str] = msgspec.field(default_factory=list)
    platform_check: str = ""
    attestations: Attestations = "keep"
    allow_duplicate_platforms: bool = False
    media_type: str = ""
    artifact_type: str = ""
    subject: str = ""
    labels_to_annotations: bool = False
    targets: list[str] = msgspec.field(default_factory=list)


class ListSpec(ListKeys, kw_only=True, forbid_unknown_fields=True):
    """One plan document: a target list."""

    image: str
    manifests: list[ManifestSpec]


class AliasSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``aliases`` key of a compact document: which matrix key holds versions, which
    keys are suffixes of every alias, and the alias templates (None: the defaults)."""

    version: str
    suffix: list[str] = msgspec.field(default_factory=list)
    tags: list[str] | None = None


class CompactSpec(ListKeys, kw_only=True, forbid_unknown_fields=True):
    """A compact document: a matrix of values and the templates of its lists."""

    matrix: dict[str, list[str]]
    image: str
    platforms: list[str] | None = None
    template: str | None = None
    manifests: list[ManifestSpec] | None = None
    aliases: AliasSpec | None = None


class CopySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A ``copy:`` document: a source copied exactly to each target (``manyfest copy``)."""

    copy: str
    to: list[str]
    all_tags: bool = False


@dataclass(frozen=True, slots=True)
class PlanCopy:
    """A validated copy (a ``copy:`` document, or ``manyfest copy``'s arguments).

    Attributes:
        source: what to copy: a reference with a tag or digest (no tag nor digest:
            ``latest``); with ``all_tags``, a repository (tag and digest ``None``).
        targets: where: each a reference with a tag (that tag), or a repository (tag and
            digest ``None``: the source's tag, or its digest alone when it has none).
        all_tags: copy every tag of the source's repository to each target repository.
        document: the plan document (1-based; 0 on the command line).
    """

    source: Reference
    targets: tuple[Reference, ...]
    all_tags: bool = False
    document: int = 0


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """A validated source entry: reference plus the platform fields the plan sets."""

    ref: Reference
    override: PlatformSpec | None

    def platform(self, config: Platform) -> Platform:
        """The entry's platform: the plan's fields where set, the config's elsewhere.

        As manifest-tool's ``resolvePlatform``: plan os/arch win; variant, os.version and
        os.features come from the config when the plan leaves them empty.
        """
        o = self.override
        if o is None:
            return config
        platform = Platform(
            o.os or config.os,
            o.architecture or config.architecture,
            o.variant or config.variant,
            o.os_version or config.os_version,
            tuple(o.os_features) or config.os_features,
        )
        # The config's own object when equal: a source shared by many lists, one Platform.
        return config if platform == config else platform


@dataclass(frozen=True, slots=True)
class PlanList:
    """A validated target list: target reference, all tags, annotations, entries in order.

    ``require_platforms``: platforms the published list must have (``platform.matches``);
    ``platform_check``: ``error``, ``warn``, ``off`` or '' (the default policy, see
    :func:`manyfest.platform.enforce`), the command line's when it gave one.
    ``attestations``: keep or drop the attestation entries of index sources;
    ``allow_duplicate_platforms``: two images may have the same platform.
    ``media_type`` ('' = auto, ``auto``, ``oci``, ``docker``), ``artifact_type``, ``subject``
    (as written: a reference, ``@DIGEST`` or ``:TAG``) and ``labels_to_annotations`` are the
    plan keys of the same names; command-line flags override them.
    ``aliases``: the floating aliases computed for this list (``aliases:`` of a compact
    document), also in ``extra_tags``, after the tags written.
    ``targets``: the document's other targets (``targets:``), before fan-out
    (:func:`fan_out`); empty on the lists a plan returns.
    ``mirror_of``: on a list made by fan-out (a ``targets:`` entry or ``--mirror``), the
    first target of its document (``image:``); ``None`` on a first target.
    """

    target: Reference
    extra_tags: tuple[str, ...]
    annotations: dict[str, str]
    entries: tuple[PlanEntry, ...]
    document: int
    require_platforms: tuple[Platform, ...] = ()
    platform_check: str = ""
    attestations: Attestations = "keep"
    allow_duplicate_platforms: bool = False
    media_type: str = ""
    artifact_type: str = ""
    subject: str = ""
    labels_to_annotations: bool = False
    aliases: tuple[str, ...] = ()
    targets: tuple[Reference, ...] = ()
    mirror_of: Reference | None = None

    @property
    def tags(self) -> list[str]:
        """Every tag: the target's, then the extra ones."""
        return [self.target.tag or "latest", *self.extra_tags]


# libyaml's parser when PyYAML has it (10x faster on big plans); same BaseLoader semantics.
_BaseLoader: type[yaml.BaseLoader] = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class _PlanLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """BaseLoader (every scalar a string) that still reads a plain null as None and refuses
    a key given twice in one mapping (Go's YAML, which manifest-tool uses, refuses it too;
    PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # a list or mapping as key: BaseConstructor refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_PlanLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)\Z"), ["~", "n", "N", ""]
)
_PlanLoader.add_constructor("tag:yaml.org,2002:null", lambda loader, node: None)


def _drop_null_keys(node: Any) -> Any:
    """Drop mapping keys whose value is null: as in manifest-tool (Go), null means "not given"."""
    if isinstance(node, dict):
        return {k: _drop_null_keys(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_drop_null_keys(v) for v in node]
    return node


_ALIASES = {"osversion": "os.version", "osfeatures": "os.features"}


def _normalise_platform(doc: dict[str, Any], where: str) -> None:
    for entry in doc.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        platform = entry.get("platform")
        if not isinstance(platform, dict):
            continue
        for alias, key in _ALIASES.items():
            if alias in platform:
                if key in platform:
                    raise PlanError(f"{where}: both {alias!r} and {key!r} given in a platform")
                platform[key] = platform.pop(alias)
        features = platform.get("os.features")
        if isinstance(features, str):
            platform["os.features"] = [f.strip() for f in features.split(",") if f.strip()]


_BOOLEANS = ("allow_duplicate_platforms", "labels_to_annotations")
_TRUE, _FALSE = ("true", "True", "TRUE"), ("false", "False", "FALSE")


def _booleans(doc: dict[str, Any], where: str) -> None:
    """Boolean keys (every scalar is read as its text): ``true``/``false`` as YAML 1.2 and
    Go's YAML write them; anything else is an error naming the key."""
    for key in _BOOLEANS:
        value = doc.get(key)
        if value in _TRUE:
            doc[key] = True
        elif value in _FALSE:
            doc[key] = False
        elif key in doc:
            raise PlanError(f"{where}: {key}: expected true or false, got {value!r}")


def parse_documents(
    text: str, source: str = "plan", *, platform_check: str | None = None
) -> list[PlanList]:
    """Parse plan YAML text: manifest-tool documents and compact documents, mixed freely.

    A document with a ``matrix`` key is compact; any other is a manifest-tool document (one
    list). A compact document has the keys ``matrix`` (a mapping of keys to lists of string
    values), ``image``, optional ``tags`` and ``annotations``, and either ``platforms``
    (``os/arch[/variant]`` strings) with ``template``, or ``manifests`` (manifest-tool
    entries). It expands to one list per combination of the matrix values
    (:func:`itertools.product`: keys in the order written, then values in the order
    written). Its strings are :meth:`str.format_map` templates over the matrix keys
    (``{{`` and ``}}`` are literal braces): ``image``, each tag, each annotation value, each
    manifest's ``image`` and platform values; ``template`` may also use ``{os}``, ``{arch}``
    and ``{variant}`` (empty when the platform has none). Each platform makes one entry
    whose source is the template and whose platform override is that os/architecture/variant,
    as manifest-tool's ``push from-args`` does. Expanded lists are validated as manifest-tool
    documents are; their errors name the combination, e.g. ``document 2 (version='1.0',
    flavor='')``.

    ``aliases: {version: KEY, suffix: KEY or [KEYS], tags: [TEMPLATES]}`` marks a matrix
    key as a version (:func:`manyfest.ops.aliases.parse_version`): every template may then
    use ``{major}``, ``{minor}`` and ``{patch}``, and each alias template (default
    :data:`manyfest.ops.aliases.DEFAULT_ALIASES`; also ``{suffix}``, ``{latest}``) is
    rendered per list and given, after the tags written, to the newest release of its group
    only: the lists of one target repository, version suffix and value of every other
    matrix key whose alias renders alike (:func:`manyfest.ops.aliases.assign`).
    Pre-releases get none; a template using a number the version lacks does not apply.

    ``require_platforms`` (``os/arch[/variant]`` strings) and ``platform_check``
    (``error|warn|off``) may be given on either kind of document; ``platform_check``, when
    given here, overrides every document's (the command line's ``--platform-check``). Under
    ``error`` and by default, a platform override naming os and architecture and every
    ``require_platforms`` entry must be in the platform table
    (:func:`manyfest.platform.validate`); under ``warn`` they are checked when the list is
    built, under ``off`` never.

    Lists come in file order, a compact document's in matrix order; ``PlanList.document``
    is the 1-based document number. Every tag (target or extra) may be written by one list
    only.

    Raises:
        PlanError: YAML syntax errors, text that is not Unicode (lone surrogates), nesting
            too deep to read, unknown keys, missing fields, wrong shapes, invalid
            references or tags, unknown placeholders (``document 3: template: unknown
            placeholder {flavour}``), matrix keys that are not names or that shadow
            ``{os}``/``{arch}``/``{variant}``, empty or repeated matrix values, invalid
            platforms, two platforms giving one source, a tag (written or an alias) written
            by two lists (naming both documents); with ``aliases``: a version or suffix key
            that is not a matrix key, a value of the version key that is not a version (the
            message gives the expected shape) or equal to another, a matrix key shadowing a
            version placeholder, a version placeholder the version lacks, an alias that is
            not a valid tag, a value of a suffix key that is neither '' nor starts with
            ``-`` or ``_``; the message names the document (1-based) and the field. The
            hint of an error in a compact document is about compact documents
            (:data:`MATRIX_HINT`, :data:`ALIASES_HINT` or more particular), never
            manifest-tool's spec.
    """
    try:
        return _parse_documents(text, source, platform_check)
    except RecursionError:  # libyaml allows 1000 levels; construct/convert recurse in Python
        raise PlanError(f"{source}: the plan is nested too deeply to read") from None


def _documents(text: str, source: str) -> Iterator[Any]:
    """The YAML documents of ``text``, one at a time (a 10,000-list plan is never held as
    10,000 document trees at once: each is converted and dropped before the next is read).

    Raises:
        PlanError: invalid YAML, or text that is not Unicode, when the reader reaches it.
    """
    try:
        yield from yaml.load_all(text, Loader=_PlanLoader)
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from exc
    except UnicodeEncodeError as exc:  # libyaml encodes str to UTF-8 first
        raise PlanError(f"{source}: invalid text: {exc}") from exc


def _parse_documents(text: str, source: str, platform_check: str | None,
                     copies: list[PlanCopy] | None = None) -> list[PlanList]:
    documents = _documents(text, source)
    lists: list[PlanList] = []
    labels: list[str] = []
    aliased: dict[int, frozenset[str]] = {}
    number = 0
    for number, doc in enumerate(documents, start=1):
        if doc is None or doc == "":
            continue
        where = f"{source}: document {number}"
        if not isinstance(doc, dict):
            raise PlanError(f"{where}: expected a mapping with image, tags and manifests")
        if "copy" in doc:
            if copies is None:
                raise PlanError(
                    f"{where}: a copy: document, which this reader does not run",
                    hint="run the plan with manyfest publish, or read it with "
                    "manyfest.ops.plan.parse_plan",
                )
            copies.append(_copy_document(_drop_null_keys(doc), where, number))
            continue
        if "matrix" in doc:
            try:
                expanded, given = _expand(doc, source, number, platform_check)
            except PlanError as exc:  # manifest-tool's spec is not the advice for a matrix
                if exc.hint == PlanError.default_hint:
                    exc.hint = MATRIX_HINT
                raise
            if given is not None:
                aliased[number] = given
            for label, plan in expanded:
                labels.append(label)
                lists.append(plan)
            continue
        doc = _drop_null_keys(doc)
        _normalise_platform(doc, where)
        _booleans(doc, where)
        spec = _convert(doc, ListSpec, where)
        labels.append(f"document {number}")
        lists.append(_validate(spec, where, number, platform_check))
    if not lists and not copies:
        raise PlanError(f"{source}: no list in the plan", hint="add at least one YAML document")
    if any(plan.targets for plan in lists):
        labels = [label for plan, label in zip(lists, labels, strict=True)
                  for _ in range(1 + len(plan.targets))]
        lists = fan_out(lists)
    _check_unique_tags(lists, labels, source, aliased)
    return lists


_S = TypeVar("_S", bound=msgspec.Struct)


def _convert(doc: dict[str, Any], kind: type[_S], where: str) -> _S:
    """``msgspec.convert(doc, kind)``; when it fails, the first problem in the plan's words
    (see :func:`_problem`), else msgspec's own message.

    Raises:
        PlanError: the document does not fit ``kind``.
    """
    try:
        return msgspec.convert(doc, kind)
    except msgspec.ValidationError as exc:
        found = _problem(doc, mi.type_info(kind), "", top=kind)
        if found is None:  # pragma: no cover - msgspec refused what the walk accepts
            raise PlanError(f"{where}: {exc}") from exc
        message, hint = found
        raise PlanError(f"{where}: {message}", hint=hint) from None


def _keys_of(t: mi.StructType) -> list[str]:
    """The keys a plan mapping of type ``t`` accepts, as written in plans: the required
    ones first, then the others in their declared order."""
    return [f.encode_name for f in sorted(t.fields, key=lambda f: not f.required)]


_COMPACT_ONLY = ("matrix", "platforms", "template")


def _copy_keys() -> list[str]:
    """A ``copy:`` document's keys (named in a plan document's unknown-key hint)."""
    t = mi.type_info(CopySpec)
    assert isinstance(t, mi.StructType)
    return _keys_of(t)


def _problem(
    value: Any, t: mi.Type, path: str, *, top: type[msgspec.Struct] | None = None
) -> tuple[str, str | None] | None:
    """The first place where ``value`` (a YAML document, read as strings, lists, mappings
    and nulls) does not fit the type ``t``: ``(message, hint)``, or None when it fits.

    Messages name the key by its path (``manifests[1].platform``), what was expected and
    what was given; an unknown key gets the nearest valid key of its mapping
    (:func:`difflib.get_close_matches`, else a valid key it starts) and the hint lists them.
    """
    at = f"{path}: " if path else ""
    if isinstance(t, mi.UnionType):
        kinds = [k for k in t.types if not isinstance(k, mi.NoneType)]
        if value is None:
            return None
        if len(kinds) == 1:
            return _problem(value, kinds[0], path, top=top)
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            return f"{at}expected {_describe(t)}, got {_given(value)}", None
        keys = _keys_of(t)
        kind = "a matrix document" if top is CompactSpec else "a document"
        hint = f"the keys of {path or kind} are {', '.join(keys)}"
        copy_keys = _copy_keys() if not path and top in (ListSpec, CompactSpec) else []
        if copy_keys:  # a document of the plan: it may also be a copy: document
            hint += f"; those of a copy: document are {', '.join(copy_keys)}"
        for key in value:
            if key in keys:
                continue
            if not isinstance(key, str):
                return f"{at}expected string keys, got {_given(key)}", hint
            message = f"{at}unknown key {key!r}"
            if top is ListSpec and key == "aliases":
                message += " (aliases belong to a compact document: one with a matrix key)"
            elif top is ListSpec and key in _COMPACT_ONLY:
                message += " (platforms and template belong to a compact document: one " \
                    "with a matrix key)"
            else:
                near = _nearest(key, keys)
                if near:
                    message += f" (did you mean {near!r}?)"
                elif copy_keys and (near := _nearest(key, copy_keys)):
                    message += f" (did you mean {near!r}, of a copy: document?)"
            return message, hint
        for f in t.fields:
            if f.required and f.encode_name not in value:
                return f"{at}missing key {f.encode_name!r} ({_describe(f.type)})", hint
        for f in t.fields:
            if f.encode_name in value:
                sub = f"{path}.{f.encode_name}" if path else f.encode_name
                found = _problem(value[f.encode_name], f.type, sub)
                if found is not None:
                    return found
        return None
    if isinstance(t, mi.ListType):
        if not isinstance(value, list):
            return f"{at}expected {_describe(t)}, got {_given(value)}", None
        for i, item in enumerate(value):
            found = _problem(item, t.item_type, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            return f"{at}expected {_describe(t)}, got {_given(value)}", None
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{at}expected string keys, got {_given(key)}", None
            found = _problem(item, t.value_type, f"{path}[{key!r}]")
            if found is not None:
                return found
        return None
    if isinstance(t, mi.LiteralType):
        choices = _choices(t)
        if value in choices:
            return None
        message = f"{at}expected one of {', '.join(choices)}, got {_given(value)}"
        near = _nearest(value, choices) if isinstance(value, str) else None
        return message + (f" (did you mean {near!r}?)" if near else ""), None
    if isinstance(t, mi.StrType):
        if isinstance(value, str):
            return None
        return f"{at}expected {_describe(t)}, got {_given(value)}", None
    if isinstance(t, mi.BoolType):
        if isinstance(value, bool):
            return None
        return f"{at}expected true or false, got {_given(value)}", None
    return None  # pragma: no cover - no other type in the plan's Structs


def _choices(t: mi.LiteralType) -> list[str]:
    """A literal's values in their documented order (msgspec sorts them)."""
    values = [str(v) for v in t.values]
    return list(ATTESTATION_CHOICES) if set(values) == set(ATTESTATION_CHOICES) else values


def _nearest(word: str, choices: Sequence[str]) -> str | None:
    """The valid key or value nearest ``word``: the closest by :mod:`difflib`, else the one
    ``word`` starts (``arch``: ``architecture``); None when none is near."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    starts = [c for c in choices if len(word) >= 3 and c.startswith(word)]
    return starts[0] if len(starts) == 1 else None


def _describe(t: mi.Type, many: bool = False) -> str:
    """What a plan value of type ``t`` must be, in words (``many``: plural)."""
    if isinstance(t, mi.UnionType):
        kinds = [k for k in t.types if not isinstance(k, mi.NoneType)]
        return " or ".join(_describe(k, many) for k in kinds)
    if isinstance(t, mi.StrType):
        return "strings" if many else "a string"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(_choices(t))
    if isinstance(t, mi.ListType):
        return f"{'lists' if many else 'a list'} of {_describe(t.item_type, True)}"
    if isinstance(t, mi.DictType):
        return f"{'mappings' if many else 'a mapping'} of strings to " \
            f"{_describe(t.value_type, True)}"
    if isinstance(t, mi.StructType):
        return f"{'mappings' if many else 'a mapping'} with keys {', '.join(_keys_of(t))}"
    return "a value"  # pragma: no cover - no other type in the plan's Structs


def _given(value: Any) -> str:
    """What a plan value is, in words: a string is quoted, a list or mapping named."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)  # pragma: no cover - BaseLoader reads nothing else


_PLATFORM_KEYS = ("os", "arch", "variant")
_MATRIX_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_PLATFORM_RE = re.compile(r"[^/\s]+/[^/\s]+(?:/[^/\s]+)?\Z")
_FORMATTER = string.Formatter()

MATRIX_HINT = "fix the matrix document (docs/plan.md: matrix: {KEY: [VALUES]}, image and " \
    "tags using {KEY}, platforms and template, or manifests)"
"""The hint of an error in a compact document that has no more particular one."""

ALIASES_HINT = "write aliases: {version: KEY}, optionally with suffix: KEY or [KEYS] and " \
    "tags: [TEMPLATES] (docs/plan.md)"
"""The hint of an error in the ``aliases`` key that has no more particular one."""

_TAG_HINT = "a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"


def _split_platform(text: str) -> tuple[str, str, str] | None:
    """``os/arch[/variant]`` → (os, arch, variant); None when not of that form."""
    if not _PLATFORM_RE.match(text):
        return None
    parts = text.split("/")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _check_placeholders(text: str, names: Sequence[str], where: str, field: str) -> None:
    """Raise PlanError unless ``text`` is a format string whose fields are all in ``names``."""
    try:
        parsed = [(name, spec) for _, name, spec, _ in _FORMATTER.parse(text) if name is not None]
    except ValueError as exc:
        raise PlanError(f"{where}: {field}: invalid template {text!r}: {exc}",
                        hint="close each placeholder: {KEY}; write {{ and }} for a literal "
                        "brace") from None
    defined = ", ".join(f"{{{n}}}" for n in names) or "none"
    hint = f"placeholders defined for {field}: {defined}"
    for name, spec in parsed:
        if name == "" or name.isdigit():
            raise PlanError(f"{where}: {field}: positional placeholder {{{name}}}", hint=hint)
        if re.search(r"[.\[]", name):
            raise PlanError(
                f"{where}: {field}: placeholder {{{name}}}: attribute and index access are "
                "not supported",
                hint=hint,
            )
        if name not in names:
            raise PlanError(f"{where}: {field}: unknown placeholder {{{name}}}",
                            hint=_placeholder_hint(name, names, hint))
        if spec:
            _check_placeholders(spec, names, where, field)


def _placeholder_hint(name: str, names: Sequence[str], hint: str) -> str:
    """The hint of an unknown placeholder: the aliases placeholders say where they are
    defined (``{major}`` needs ``aliases:``; ``{suffix}`` is for alias templates only),
    any other name gets ``hint`` (the placeholders defined)."""
    if "major" not in names and name in (*versions.VERSION_PLACEHOLDERS,
                                         *versions.ALIAS_PLACEHOLDERS):
        return f"{{{name}}} is a placeholder of aliases: mark the matrix key of versions " \
            "with aliases: {version: KEY} (docs/plan.md)"
    if name in versions.ALIAS_PLACEHOLDERS and "suffix" not in names:
        return f"{{{name}}} is a placeholder of aliases.tags only; {hint}"
    return hint


def _render(text: str, values: Mapping[str, str], doc_where: str, where: str, field: str) -> str:
    """``text.format_map(values)``; unknown names are errors of the document, others of
    the combination (``where``)."""
    _check_placeholders(text, list(values), doc_where, field)
    try:
        return text.format_map(values)
    except _MissingNumber as exc:
        raise PlanError(
            f"{where}: {field}: {exc}",
            hint=f"every list of the document renders {field}: give each version a "
            f"{exc.name} number, or use {{{exc.name}}} in aliases.tags only (an alias "
            f"template skips a version without it)",
        ) from None
    except (ValueError, TypeError) as exc:  # a format spec or conversion a str refuses
        raise PlanError(f"{where}: {field}: {exc}") from None


def _render_platform(
    p: PlatformSpec, values: Mapping[str, str], doc_where: str, where: str, field: str
) -> PlatformSpec:
    def r(text: str, name: str) -> str:
        return _render(text, values, doc_where, where, f"{field}.{name}")

    return PlatformSpec(
        architecture=r(p.architecture, "architecture"),
        os=r(p.os, "os"),
        variant=r(p.variant, "variant"),
        os_version=r(p.os_version, "os.version"),
        os_features=[r(f, f"os.features[{i}]") for i, f in enumerate(p.os_features)],
    )


def _platform_manifests(
    platforms: Sequence[tuple[str, tuple[str, str, str]]],
    source_of: Callable[[str, str, str], str],
    where: str,
    hint: str,
) -> list[ManifestSpec]:
    """One entry per platform: its source name and an os/architecture/variant override.

    ``where`` ends with the field naming the template; two platforms giving the same source
    are an error (the template lacks a placeholder).
    """
    manifests: list[ManifestSpec] = []
    seen: dict[str, str] = {}
    for text, (os_, arch, variant) in platforms:
        image = source_of(os_, arch, variant)
        try:
            ref = str(reference.parse(image))
        except InvalidReferenceError as exc:
            raise PlanError(f"{where}: {text}: {exc}", hint=hint) from exc
        if ref in seen:
            raise PlanError(
                f"{where}: {seen[ref]} and {text} both give {image!r}",
                hint="each platform needs its own source; " + hint,
            )
        seen[ref] = text
        override = PlatformSpec(architecture=arch, os=os_, variant=variant)
        manifests.append(ManifestSpec(image, override))
    return manifests


def _expand(
    doc: dict[str, Any], source: str, number: int, platform_check: str | None
) -> tuple[list[tuple[str, PlanList]], frozenset[str] | None]:
    """A compact document's lists, in matrix order, each with its label for errors; and
    with ``aliases``, every alias its templates gave (also those a list writes in its own
    tags), else None."""
    doc_where = f"{source}: document {number}"
    matrix = doc.get("matrix")
    if isinstance(matrix, dict):  # before nulls are dropped: `key:` with no value is an error
        for key, values in matrix.items():
            if values is None or values == []:
                raise PlanError(f"{doc_where}: matrix: {key}: no values")
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise PlanError(
                    f"{doc_where}: matrix: {key}: expected a list of strings",
                    hint="write matrix values as a list: key: [a, b]",
                )
    doc = _drop_null_keys(doc)
    _normalise_platform(doc, doc_where)
    _booleans(doc, doc_where)
    alias_doc = doc.get("aliases")
    suffix_alone = False
    if isinstance(alias_doc, dict) and "suffix" in alias_doc:
        suffix = alias_doc["suffix"]
        if isinstance(suffix, str):
            alias_doc["suffix"] = [suffix]  # one key, or a list of keys
            suffix_alone = True
        elif not (isinstance(suffix, list) and all(isinstance(k, str) for k in suffix)):
            raise PlanError(
                f"{doc_where}: aliases.suffix: expected a matrix key or a list of matrix "
                f"keys, got {_given(suffix)}",
                hint="write suffix: flavor, or suffix: [variant, distro]",
            )
    try:
        spec = _convert(doc, CompactSpec, doc_where)
    except PlanError as exc:
        if exc.hint == PlanError.default_hint and exc.message.startswith(f"{doc_where}: aliases"):
            exc.hint = _aliases_hint(alias_doc)
        raise
    for key, values in spec.matrix.items():
        if not _MATRIX_KEY.match(key):
            raise PlanError(
                f"{doc_where}: matrix: invalid key {key!r}",
                hint="matrix keys are names: letters, digits, '_' and '-', not starting "
                "with a digit",
            )
        repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if repeated is not None:
            raise PlanError(f"{doc_where}: matrix: {key}: value {repeated!r} given twice")
    platforms: list[tuple[str, tuple[str, str, str]]] = []
    if spec.manifests is None:
        if spec.platforms is None or spec.template is None:
            raise PlanError(
                f"{doc_where}: a matrix document needs platforms and template, or manifests"
            )
        for key in _PLATFORM_KEYS:
            if key in spec.matrix:
                raise PlanError(
                    f"{doc_where}: matrix: key {key!r} is the {{{key}}} platform placeholder",
                    hint="rename the matrix key, or use manifests instead of platforms",
                )
        if not spec.platforms:
            raise PlanError(f"{doc_where}: platforms: a list needs at least one platform")
        for i, text in enumerate(spec.platforms):
            parsed = _split_platform(text)
            if parsed is None:
                raise PlanError(
                    f"{doc_where}: platforms[{i}]: invalid platform {text!r}: expected "
                    "os/arch[/variant]"
                )
            platforms.append((text, parsed))
    elif spec.platforms is not None or spec.template is not None:
        raise PlanError(f"{doc_where}: give platforms and template, or manifests, not both")

    version_of = _versions(spec, doc_where, suffix_alone)
    out: list[tuple[str, PlanList]] = []
    for combination in itertools.product(*spec.matrix.values()):
        names = dict(zip(spec.matrix, combination, strict=True))
        label = f"document {number}"
        if names:
            label += " (" + ", ".join(f"{k}={v!r}" for k, v in names.items()) + ")"
        values = names
        if spec.aliases is not None:
            values = {**names, **_version_values(version_of[names[spec.aliases.version]])}
        listspec = _combination(spec, values, platforms, doc_where, f"{source}: {label}")
        out.append((label, _validate(listspec, f"{source}: {label}", number, platform_check)))
    if spec.aliases is None:
        return out, None
    return _with_aliases(spec, spec.aliases, version_of, out, source, doc_where)


def _aliases_hint(alias_doc: Any) -> str:
    """The hint of an ``aliases`` value of the wrong shape: the mapping to write, with the
    value given where it is a key's name or a template (``aliases: version``)."""
    if isinstance(alias_doc, str):
        return f"write aliases: {{version: {alias_doc}}} (docs/plan.md)"
    if isinstance(alias_doc, dict) and isinstance(alias_doc.get("tags"), str):
        return f"write alias templates as a list: tags: [{alias_doc['tags']!r}]"
    return ALIASES_HINT


class _MissingNumber(ValueError):
    """A template used a version placeholder the version has no number for."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class _Missing(str):
    """A version placeholder the version has no number for (``{patch}`` of ``1.2``): in
    :meth:`str.format_map` it raises :class:`_MissingNumber` with its text as the message."""

    name: str

    def __format__(self, spec: str) -> str:
        raise _MissingNumber(str(self), self.name)


def _missing(version: versions.Version, name: str) -> _Missing:
    value = _Missing(f"{{{name}}}: version {version.text!r} has no {name} number")
    value.name = name
    return value


def _version_values(version: versions.Version) -> dict[str, str]:
    """``{major}``, ``{minor}``, ``{patch}`` of a version for templates; missing numbers
    are :class:`_Missing` (an error where a template uses them)."""
    values: dict[str, str] = {name: _missing(version, name) for name in version.missing()}
    values.update(version.placeholders())
    return values


def _versions(
    spec: CompactSpec, doc_where: str, suffix_alone: bool = False
) -> dict[str, versions.Version]:
    """Check ``aliases`` and parse the version key's values: ``{value: Version}`` ({} when
    the document has no ``aliases``). ``suffix_alone``: ``aliases.suffix`` was written as
    one key, not a list (errors name ``aliases.suffix``, not ``aliases.suffix[0]``).

    Raises:
        PlanError: the version or a suffix key is not a matrix key, a suffix key is the
            version key or is given twice, a matrix key shadows a version placeholder, a
            value is not a version, two values are the same version, a value of a suffix
            key is neither '' nor starts with '-' or '_' (it would run into the numbers:
            ``1.2alpine``).
    """
    spec_aliases = spec.aliases
    if spec_aliases is None:
        return {}
    keys = list(spec.matrix)
    known = f"the matrix keys are {', '.join(keys)}"
    key = spec_aliases.version
    if key not in spec.matrix:
        raise PlanError(f"{doc_where}: aliases.version: {key!r} is not a matrix key", hint=known)
    for i, suffix in enumerate(spec_aliases.suffix):
        field = "aliases.suffix" if suffix_alone else f"aliases.suffix[{i}]"
        if suffix not in spec.matrix:
            raise PlanError(f"{doc_where}: {field}: {suffix!r} is not a matrix key", hint=known)
        if suffix == key:
            raise PlanError(
                f"{doc_where}: {field}: {suffix!r} is the version key (aliases.version)",
                hint="a suffix key holds variants such as -slim; a suffix in the versions "
                "themselves (3.12.7-slim) is used without one",
            )
        if suffix in spec_aliases.suffix[:i]:
            raise PlanError(f"{doc_where}: {field}: {suffix!r} given twice",
                            hint="name each suffix key once")
    for name in (*versions.VERSION_PLACEHOLDERS, *versions.ALIAS_PLACEHOLDERS):
        if name in spec.matrix:
            raise PlanError(
                f"{doc_where}: matrix: key {name!r} is the {{{name}}} placeholder of aliases",
                hint="rename the matrix key",
            )
    parsed: dict[str, versions.Version] = {}
    seen: dict[tuple[tuple[int, ...], str], str] = {}
    for value in spec.matrix[key]:
        version = versions.parse_version(value)
        if version is None:
            raise PlanError(
                f"{doc_where}: matrix: {key}: {value!r} is not a version: expected "
                f"{versions.VERSION_SHAPE}",
                hint=f"aliases.version names the matrix key of versions ({key})",
            )
        same = seen.get((version.key, version.suffix))
        if same is not None:
            raise PlanError(f"{doc_where}: matrix: {key}: {same!r} and {value!r} are the "
                            "same version", hint="give each version once")
        seen[(version.key, version.suffix)] = value
        parsed[value] = version
    first = parsed[spec.matrix[key][0]]
    for suffix in spec_aliases.suffix:
        for value in spec.matrix[suffix]:
            if value == "" or value.startswith(("-", "_")):
                continue
            numbers = f"{first.major}.{first.minor}" if first.minor else first.major
            hint = f"write {'-' + value!r}: a value of an aliases.suffix key is '' or " \
                "starts with '-' or '_'"
            if f"-{{{suffix}}}" in spec.image:
                hint += f", and {{{suffix}}} where the templates have -{{{suffix}}}"
            raise PlanError(
                f"{doc_where}: matrix: {suffix}: suffix value {value!r} does not start with "
                f"'-' (aliases would read {numbers}{first.suffix}{value})",
                hint=hint,
            )
    return parsed


def _with_aliases(
    spec: CompactSpec,
    spec_aliases: AliasSpec,
    parsed: Mapping[str, versions.Version],
    lists: list[tuple[str, PlanList]],
    source: str,
    doc_where: str,
) -> tuple[list[tuple[str, PlanList]], frozenset[str]]:
    """The document's lists with their floating aliases added (:func:`versions.assign`),
    and every alias given (also those a list writes in its own tags).

    A list's groups are keyed by its target repository, its version's suffix and the values
    of every matrix key but the version key; alias templates are checked once for the
    document, then rendered per list (one using a number the version lacks does not apply).

    Raises:
        PlanError: an unknown placeholder in an alias template, a rendered alias that is
            not a valid tag, two lists of one repository given one alias (a matrix key
            left out of ``aliases.suffix``, or a template without ``{suffix}``).
    """
    templates = list(versions.DEFAULT_ALIASES if spec_aliases.tags is None
                     else spec_aliases.tags)
    names = [*spec.matrix, *versions.VERSION_PLACEHOLDERS, *versions.ALIAS_PLACEHOLDERS]
    used: list[set[str]] = []
    for j, template in enumerate(templates):
        _check_placeholders(template, names, doc_where, f"aliases.tags[{j}]")
        used.append({name for _, name, _, _ in _FORMATTER.parse(template) if name})
    key = spec_aliases.version
    candidates: list[versions.Candidate] = []
    combinations = list(itertools.product(*spec.matrix.values()))
    for (label, plan), combination in zip(lists, combinations, strict=True):
        values = dict(zip(spec.matrix, combination, strict=True))
        version = parsed[values[key]]
        suffix = version.suffix + "".join(values[k] for k in spec_aliases.suffix)
        placeholders = {**values, **version.placeholders(),
                        **versions.suffix_placeholders(suffix)}
        missing = set(version.missing())
        rendered: list[str | None] = []
        for j, template in enumerate(templates):
            if used[j] & missing:
                rendered.append(None)
                continue
            where = f"{source}: {label}: aliases.tags[{j}]"
            try:
                alias = template.format_map(placeholders)
            except (ValueError, TypeError) as exc:  # a format spec a str refuses
                raise PlanError(f"{where}: {exc}") from None
            if not reference.valid_tag(alias):
                raise PlanError(f"{where}: invalid tag {alias!r}", hint=_TAG_HINT)
            rendered.append(alias)
        others = tuple((k, v) for k, v in values.items() if k != key)
        partition = (registry_key(plan.target.registry), plan.target.repository,
                     version.suffix, others)
        candidates.append(versions.Candidate(partition, version, tuple(rendered)))
    try:
        given = versions.assign(candidates)
    except ValueError as exc:  # pragma: no cover - equal versions are refused first
        raise PlanError(f"{doc_where}: aliases: {exc}") from None
    out: list[tuple[str, PlanList]] = []
    holders: dict[tuple[str, str, str], int] = {}
    for i, ((label, plan), new) in enumerate(zip(lists, given, strict=True)):
        added = tuple(a for a in new if a not in plan.tags)
        for alias in added:
            held = holders.setdefault(
                (registry_key(plan.target.registry), plan.target.repository, alias), i)
            if held != i:
                j = candidates[i].aliases.index(alias)
                raise PlanError(
                    f"{source}: {label}: aliases: {plan.target.with_tag(alias)} is also an "
                    f"alias of {lists[held][0]}",
                    hint=_same_alias_hint(spec, spec_aliases, combinations[held],
                                          combinations[i], templates[j], j, used[j]),
                )
        if added:
            plan = dataclasses.replace(plan, extra_tags=(*plan.extra_tags, *added),
                                       aliases=added)
        out.append((label, plan))
    return out, frozenset(a for new in given for a in new)


def _same_alias_hint(
    spec: CompactSpec,
    spec_aliases: AliasSpec,
    first: Sequence[str],
    second: Sequence[str],
    template: str,
    index: int,
    used: set[str],
) -> str:
    """What to do when two lists of one document (matrix values ``first``, ``second``) got
    one alias from ``template`` (``aliases.tags[index]``, using placeholders ``used``)."""
    hint = "each tag can be written by one list only"
    differ = [k for k, a, b in zip(spec.matrix, first, second, strict=True)
              if a != b and k != spec_aliases.version]
    if not used & {"suffix", "latest"} and (set(differ) & set(spec_aliases.suffix) or
                                            not differ):
        return f"{hint}; aliases.tags[{index}] ({template!r}) renders one tag for every " \
            "suffix: use {suffix} or {latest} in it"
    unmarked = [k for k in differ if k not in spec_aliases.suffix and k not in used]
    if unmarked:
        return f"{hint}; add {' and '.join(unmarked)} to aliases.suffix"
    return hint  # pragma: no cover - lists of one group share no alias


def _combination(
    spec: CompactSpec,
    names: Mapping[str, str],
    platforms: Sequence[tuple[str, tuple[str, str, str]]],
    doc_where: str,
    where: str,
) -> ListSpec:
    """The list of one matrix combination (``names``), before validation."""

    def render(text: str, field: str) -> str:
        return _render(text, names, doc_where, where, field)

    image = render(spec.image, "image")
    tags = [render(t, f"tags[{i}]") for i, t in enumerate(spec.tags)]
    annotations = {k: render(v, f"annotations[{k!r}]") for k, v in spec.annotations.items()}
    if spec.manifests is not None:
        manifests = [
            ManifestSpec(
                render(m.image, f"manifests[{i}].image"),
                None
                if m.platform is None
                else _render_platform(
                    m.platform, names, doc_where, where, f"manifests[{i}].platform"
                ),
            )
            for i, m in enumerate(spec.manifests)
        ]
    else:
        template = spec.template
        assert template is not None

        def source_of(os_: str, arch: str, variant: str) -> str:
            placeholders = {**names, "os": os_, "arch": arch, "variant": variant}
            return _render(template, placeholders, doc_where, where, "template")

        manifests = _platform_manifests(
            platforms,
            source_of,
            f"{where}: template",
            "use {os}, {arch} and {variant} in the template",
        )
    required = [render(p, f"require_platforms[{i}]") for i, p in enumerate(spec.require_platforms)]
    targets = [render(t, f"targets[{i}]") for i, t in enumerate(spec.targets)]
    return ListSpec(
        image=image, manifests=manifests, tags=tags, annotations=annotations,
        require_platforms=required, platform_check=spec.platform_check,
        attestations=spec.attestations,
        allow_duplicate_platforms=spec.allow_duplicate_platforms,
        media_type=spec.media_type,
        artifact_type=render(spec.artifact_type, "artifact_type"),
        subject=render(spec.subject, "subject"),
        labels_to_annotations=spec.labels_to_annotations, targets=targets,
    )


COPY_HINT = ("a copy: document is copy: SOURCE, to: [TARGET, ...] and optionally "
             "all_tags: true (docs/plan.md)")


def _copy_document(doc: dict[str, Any], where: str, number: int) -> PlanCopy:
    """A ``copy:`` document validated (see :func:`check_copy`).

    Raises:
        PlanError: unknown keys, missing ``to``, a value of the wrong shape, an invalid
            reference, or a source/target that does not fit ``all_tags``.
    """
    if isinstance(doc.get("to"), str):
        doc["to"] = [doc["to"]]
    value = doc.get("all_tags")
    if value in _TRUE:
        doc["all_tags"] = True
    elif value in _FALSE:
        doc["all_tags"] = False
    elif "all_tags" in doc:
        raise PlanError(f"{where}: all_tags: expected true or false, got {value!r}",
                        hint=COPY_HINT)
    try:
        spec = _convert(doc, CopySpec, where)
    except PlanError as exc:
        exc.hint = COPY_HINT
        raise
    if not spec.to:
        raise PlanError(f"{where}: to: give at least one target", hint=COPY_HINT)
    try:
        return check_copy(spec.copy, spec.to, all_tags=spec.all_tags, document=number,
                          where=where, source_key="copy", target_key="to",
                          all_tags_key="all_tags: true")
    except UsageError as exc:
        raise PlanError(exc.message, hint=exc.hint) from None


def check_copy(source: str, targets: Sequence[str], *, all_tags: bool = False,
               document: int = 0, where: str = "", source_key: str = "SRC",
               target_key: str = "DST", all_tags_key: str = "--all-tags") -> PlanCopy:
    """A copy's source and targets parsed and checked (``manyfest copy`` and ``copy:``
    documents share the rules, docs/registries.md "Copy and promotion").

    A target is a reference with a tag, or a repository (the source's tag is kept; a
    source named by digest alone is copied by digest, no tag). A target naming a digest is
    refused (the digest is the source's, whatever is written). With ``all_tags`` the source
    and every target are repositories (no tag, no digest).

    Raises:
        UsageError: an invalid reference, or a source or target that does not fit; the
            message names ``where`` and the key.
    """
    at = f"{where}: " if where else ""
    try:
        src = reference.parse(source, default_tag=None)
    except InvalidReferenceError as exc:
        raise UsageError(f"{at}{source_key}: {exc.message}", hint=exc.hint) from None
    dsts: list[Reference] = []
    for text in targets:
        try:
            dst = reference.parse(text, default_tag=None)
        except InvalidReferenceError as exc:
            raise UsageError(f"{at}{target_key}: {exc.message}", hint=exc.hint) from None
        if dst.digest:
            raise UsageError(
                f"{at}{target_key}: {text} names a digest: a copy keeps the source's digest",
                hint="give a repository (the source's tag is kept) or a reference with a tag",
            )
        if all_tags and dst.tag:
            raise UsageError(
                f"{at}{target_key}: {text} has a tag: {all_tags_key} copies every tag of "
                "the source into a repository",
                hint=f"give the target repository without a tag, e.g. {dst.name}",
            )
        dsts.append(dst)
    if all_tags and (src.tag or src.digest):
        raise UsageError(
            f"{at}{source_key}: {source} names a tag or digest: {all_tags_key} copies every "
            "tag of a repository",
            hint=f"give the source repository without a tag, e.g. {src.name}",
        )
    if not all_tags and src.tag is None and src.digest is None:
        src = src.with_tag("latest")
    for dst in dsts:
        # no tag (None; a layout's oci:PATH has tag ''): the source's tag, so itself
        if dst.in_repository(src) and (not dst.tag or dst.tag == src.tag):
            raise UsageError(
                f"{at}{target_key}: {dst} is the source itself",
                hint="give another repository or tag to copy to",
            )
    return PlanCopy(src, tuple(dsts), all_tags, document)


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole plan: its lists and its copies (``copy:`` documents), each in file order."""

    lists: list[PlanList]
    copies: list[PlanCopy]


def parse_plan(text: str, source: str = "plan", *, platform_check: str | None = None) -> Plan:
    """Parse plan YAML text as :func:`parse_documents` does, ``copy:`` documents included.

    A document with a ``copy`` key is a copy (``copy: SOURCE``, ``to: TARGET`` or a list
    of them, optional ``all_tags: true``), checked by :func:`check_copy`. A plan may hold
    copies only.

    Raises:
        PlanError: as :func:`parse_documents`, and a ``copy:`` document that does not fit.
    """
    copies: list[PlanCopy] = []
    try:
        lists = _parse_documents(text, source, platform_check, copies)
    except RecursionError:
        raise PlanError(f"{source}: the plan is nested too deeply to read") from None
    except UsageError as exc:
        if isinstance(exc, PlanError):
            raise
        raise PlanError(exc.message, hint=exc.hint) from None
    return Plan(lists, copies)


def _check_unique_tags(
    lists: Sequence[PlanList],
    labels: Sequence[str],
    source: str,
    aliased: Mapping[int, frozenset[str]],
) -> None:
    """Refuse a tag written by two lists: they would race and the last PUT would win.

    ``aliased``: per compact document with ``aliases``, every alias it gave; the hint of a
    tag written by every list of such a document says whether the aliases give it already.
    """
    seen: dict[tuple[str, str, str], tuple[str, str, int]] = {}
    for plan, label in zip(lists, labels, strict=True):
        for i, tag in enumerate(plan.tags):
            key = (registry_key(plan.target.registry), plan.target.repository, tag)
            first = "image" if plan.mirror_of is None else "targets"
            field = first if i == 0 else "aliases" if tag in plan.aliases else "tags"
            if key in seen:
                other, other_field, document = seen[key]
                role = {"image": "the target", "targets": "a target",
                        "aliases": "an alias"}.get(other_field, "a tag")
                hint = "each tag can be written by one list only"
                if field == other_field == "tags" and document == plan.document and \
                        label.endswith(")"):  # one matrix gives a fixed tag to every list
                    given = aliased.get(document)
                    if given is None:
                        hint += "; to give a tag such as latest to the newest version " \
                            "only, mark the version key with aliases: (docs/plan.md)"
                    elif tag in given:
                        hint += f"; aliases: gives {tag} to the newest version already: " \
                            "remove it from tags"
                    else:
                        hint += f"; to give {tag} to the newest version only, write it in " \
                            "aliases.tags (docs/plan.md)"
                elif field == other_field == "aliases":  # two documents of one repository
                    hint += "; aliases are computed per document: put these versions in " \
                        f"one document, or leave the template giving {tag!r} out of one " \
                        "document's aliases.tags"
                elif "aliases" in (field, other_field) and document != plan.document:
                    giver = document if other_field == "aliases" else plan.document
                    hint += f"; document {giver} gives {tag!r} as an alias: write it in " \
                        "no other list, or leave the template giving it out of document " \
                        f"{giver}'s aliases.tags"
                raise PlanError(
                    f"{source}: {label}: {field}: "
                    f"{plan.target.with_tag(tag)} is also {role} of {other}",
                    hint=hint,
                )
            seen[key] = (label, field, plan.document)


_ARGS_HINT = "check --platforms, --template, --target, --tags and --annotations"


def _split_values(values: Iterable[str]) -> list[str]:
    """Comma-separated, repeatable option values, stripped, empty items dropped."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def from_args(
    platforms: Iterable[str],
    template: str,
    target: str,
    tags: Iterable[str] = (),
    annotations: Iterable[str] = (),
    *,
    platform_check: str = "",
) -> list[PlanList]:
    """The one-list plan of manifest-tool's ``push from-args``.

    Follows estesp/manifest-tool v2 (``cmd/manifest-tool/push.go``): each platform
    ``os/arch[/variant]`` makes one entry whose source is ``template`` with the FIRST
    ``ARCH`` replaced by the architecture, then the first ``OS`` by the os, then the first
    ``VARIANT`` by the variant (empty when the platform has none), in that order and once
    each (``reg/app-OS-ARCHVARIANT:1`` → ``reg/app-linux-amd64:1``,
    ``reg/app-linux-armv7:1``); its platform override is that os/architecture/variant (the
    variant, when empty, comes from the image config, as manifest-tool's). Annotations are
    ``key=value`` with exactly one ``=``; a key given twice keeps the last value.

    Args:
        platforms: ``os/arch[/variant]`` values; each item may hold several, comma-separated
            (``["linux/amd64,linux/arm64/v8"]``); blanks around items are dropped.
        template: the source name with ``ARCH``, ``OS`` and ``VARIANT`` placeholders.
        target: the target list reference (a tag, not a digest).
        tags: extra tags, comma-separated items as ``platforms``.
        annotations: ``key=value`` index annotations, comma-separated items as ``platforms``.
        platform_check: ``error``, ``warn``, ``off`` or '' (default: the platforms, written
            by the user, must be in the platform table).

    Returns:
        One :class:`PlanList` (``document`` 1), entries in platform order.

    Raises:
        PlanError: (exit 2) no platform, a platform not ``os/arch[/variant]``, an annotation
            not ``key=value`` or with an empty key, an invalid target, tag or expanded
            source, a target with a digest, two platforms giving the same source.
    """
    platform_items = _split_values(platforms)
    if not platform_items:
        raise PlanError("--platforms: no platform given", hint=_ARGS_HINT)
    parsed: list[tuple[str, tuple[str, str, str]]] = []
    for text in platform_items:
        split = _split_platform(text)
        if split is None:
            raise PlanError(
                f"--platforms: invalid platform {text!r}: expected os/arch[/variant]",
                hint=_ARGS_HINT,
            )
        parsed.append((text, split))
    try:
        target_ref = reference.parse(target)
    except InvalidReferenceError as exc:
        raise PlanError(f"--target: {exc}", hint=_ARGS_HINT) from exc
    if target_ref.digest:
        raise PlanError(
            f"--target: the target {target!r} must be a tag, not a digest", hint=_ARGS_HINT
        )
    tag_items = _split_values(tags)
    for tag in tag_items:
        if not reference.valid_tag(tag):
            raise PlanError(f"--tags: invalid tag {tag!r}", hint=_ARGS_HINT)
    annotation_map: dict[str, str] = {}
    for item in _split_values(annotations):
        parts = item.split("=")
        if len(parts) != 2:
            raise PlanError(f"--annotations: {item!r} is not key=value", hint=_ARGS_HINT)
        if not parts[0]:
            raise PlanError(f"--annotations: {item!r} has an empty key", hint=_ARGS_HINT)
        annotation_map[parts[0]] = parts[1]

    def source_of(os_: str, arch: str, variant: str) -> str:
        return (
            template.replace("ARCH", arch, 1).replace("OS", os_, 1).replace("VARIANT", variant, 1)
        )

    manifests = _platform_manifests(
        parsed, source_of, "--template", "use ARCH, OS and VARIANT in --template"
    )
    spec = ListSpec(image=target, manifests=manifests, tags=tag_items,
                    annotations=annotation_map, platform_check=platform_check)
    return [_validate(spec, "arguments", 1)]


def platform_values(values: Iterable[str], where: str, mode: str = "") -> tuple[Platform, ...]:
    """Platforms a user wrote as a list (``--platform``, ``--require-platforms``,
    ``require_platforms:``): ``os/arch[/variant][:os.version]`` items, comma-separated and
    repeatable; repeated items are kept once.

    Unless ``mode`` is ``warn`` or ``off``, each must be in the platform table once
    normalised (``linux/aarch64`` is ``linux/arm64/v8``, as ``--platform`` matching does).

    Raises:
        PlanError: (exit 2, named by ``where``) an item that is not a platform, or one not in
            the table (``linux/arm64/v7``).
    """
    out: list[Platform] = []
    for text in _split_values(values):
        try:
            p = parse(text)
        except PlatformError as exc:
            raise PlanError(f"{where}: {exc.message}", hint=exc.hint) from None
        if mode in ("", "error"):
            n = normalize(p)
            try:
                validate(n.os, n.architecture, n.variant)
            except PlatformError as exc:
                # docker's annotate wording names a manifest entry: here it is the user's text
                what = exc.message.removeprefix("manifest entry for image has ")
                raise PlanError(f"{where}: {text}: {what}", hint=exc.hint) from None
        if p not in out:
            out.append(p)
    return tuple(out)


def _check_mode(value: str, where: str) -> str:
    if value not in ("", *CHECK_MODES):
        raise PlanError(
            f"{where}: platform_check: {value!r} is not error, warn or off",
            hint="platform_check: error (refuse platforms outside the table), warn or off",
        )
    return value


def _validate(
    spec: ListSpec, where: str, number: int, platform_check: str | None = None
) -> PlanList:
    try:
        target = reference.parse(spec.image)
    except InvalidReferenceError as exc:
        raise PlanError(f"{where}: image: {exc}") from exc
    if target.digest:
        raise PlanError(f"{where}: image: the target {spec.image!r} must be a tag, not a digest")
    for tag in spec.tags:
        if not reference.valid_tag(tag):
            raise PlanError(f"{where}: tags: invalid tag {tag!r}", hint=_TAG_HINT)
    if not spec.manifests:
        raise PlanError(f"{where}: manifests: a list needs at least one image")
    mode = _check_mode(platform_check or _check_mode(spec.platform_check, where), where)
    required = platform_values(spec.require_platforms, f"{where}: require_platforms", mode)
    entries = []
    for i, m in enumerate(spec.manifests):
        try:
            ref = reference.parse(m.image)
        except InvalidReferenceError as exc:
            raise PlanError(f"{where}: manifests[{i}].image: {exc}") from exc
        p = m.platform
        if p is not None and p.os and p.architecture and mode in ("", "error"):
            # A platform written in the plan is checked now, before any request; one read
            # from an image's config is checked when the list is built (a warning by
            # default: what was built is taken as built).
            try:
                validate(p.os, p.architecture, p.variant)
            except PlatformError as exc:
                raise PlanError(
                    f"{where}: manifests[{i}].platform ({m.image}): {exc.message}",
                    hint=exc.hint,
                ) from exc
        entries.append(PlanEntry(ref, m.platform))
    extra = tuple(t for t in dict.fromkeys(spec.tags) if t != target.tag)
    targets = _check_targets(spec.targets, target, spec.subject, where)
    labels = spec.labels_to_annotations
    media_type = check_list_settings(
        spec.media_type, spec.annotations, spec.artifact_type, spec.subject, labels,
        where=where, keys=PLAN_KEYS,
    )
    return PlanList(
        target, extra, dict(spec.annotations), tuple(entries), number, required, mode,
        attestations=spec.attestations,
        allow_duplicate_platforms=spec.allow_duplicate_platforms,
        media_type=media_type, artifact_type=spec.artifact_type, subject=spec.subject,
        labels_to_annotations=labels, targets=targets,
    )


_TARGETS_HINT = "each entry of targets is another full reference registry/repository:tag " \
    "that gets the same list and the same tags (docs/plan.md)"


def _target_key(ref: Reference) -> tuple[str, str, str]:
    """A target's identity: registry (``host`` and ``host:80`` are one), repository, tag."""
    return registry_key(ref.registry), ref.repository, ref.tag or "latest"


def _check_targets(
    texts: Sequence[str], image: Reference, subject: str, where: str
) -> tuple[Reference, ...]:
    """The ``targets:`` of a document, validated: each a reference with a tag (written: a
    target is a full reference; no default ``latest``), not a digest, none equal to
    ``image`` or to another target. A ``subject`` written as a full reference cannot go
    with other targets (a subject must be in each target's repository).

    Raises:
        PlanError: (exit 2) one line naming the document and ``targets[i]``.
    """
    out: list[Reference] = []
    seen: dict[tuple[str, str, str], int] = {_target_key(image): -1}
    for i, text in enumerate(texts):
        field = f"{where}: targets[{i}]"
        try:
            ref = reference.parse(text, default_tag=None)
        except InvalidReferenceError as exc:
            raise PlanError(f"{field}: {exc}", hint=_TARGETS_HINT) from exc
        if ref.digest:
            raise PlanError(f"{field}: the target {text!r} must be a tag, not a digest",
                            hint=_TARGETS_HINT)
        if not ref.tag:
            raise PlanError(
                f"{field}: {text!r} has no tag",
                hint=f"write the tag: {ref.name}:{image.tag or 'latest'} (a target is a full "
                "reference registry/repository:tag)",
            )
        other = seen.get(_target_key(ref))
        if other == -1:
            raise PlanError(f"{field}: {ref} is the image itself",
                            hint="targets name the other places the list goes; leave image out")
        if other is not None:
            raise PlanError(f"{field}: {ref} is also targets[{other}]",
                            hint="give each target once")
        seen[_target_key(ref)] = i
        out.append(ref)
    if out and subject and _full_subject(subject):
        raise PlanError(
            f"{where}: subject: {subject!r} names one repository, and the list has other "
            "targets",
            hint="write the subject as @DIGEST or :TAG: it is then looked up in each "
            "target's repository",
        )
    return tuple(out)


def _full_subject(subject: str) -> bool:
    """True when a ``subject`` is a full reference (not ``@DIGEST``, ``DIGEST`` or ``:TAG``)."""
    return not (_DIGEST_ONLY.match(subject) or subject.startswith(":"))


def fan_out(lists: Sequence[PlanList]) -> list[PlanList]:
    """Each list, then one list per entry of its ``targets`` (in the order written): the
    same entries, extra tags (aliases too; less the target's own tag when it is one of
    them) and settings, at the other target, with ``mirror_of`` set to the first target.
    The lists returned have no ``targets``."""
    out: list[PlanList] = []
    for plan in lists:
        if not plan.targets:
            out.append(plan)
            continue
        first = dataclasses.replace(plan, targets=())
        out.append(first)
        out.extend(dataclasses.replace(
            first, target=t, mirror_of=plan.target,
            extra_tags=tuple(x for x in plan.extra_tags if x != t.tag),
            aliases=tuple(x for x in plan.aliases if x != t.tag),
        ) for t in plan.targets)
    return out


def check_mirror(text: str) -> str:
    """A ``--mirror`` value: a registry ``host[:port]`` (``ghcr.io``, ``127.0.0.1:5000``),
    as written.

    Raises:
        UsageError: (exit 2) not a host[:port] (a reference such as ``ghcr.io/org``, a
            scheme, an empty value).
    """
    try:
        return reference.parse_registry(text)
    except InvalidReferenceError:
        raise UsageError(
            f"--mirror {text!r}: expected a registry host[:port], not a reference",
            hint="give the registry only (ghcr.io, registry.example:5000): each list goes "
            "to the same repository path there",
        ) from None


def mirror(lists: Sequence[PlanList], registries: Sequence[str]) -> list[PlanList]:
    """``publish --mirror REGISTRY``: every first target (``image:``, ``--target``) of
    ``lists`` is also published to the same repository path and tags on each registry, as
    one more list with ``mirror_of`` (after the document's ``targets:`` lists, registries
    in the order given). ``targets:`` lists are not mirrored again.

    Raises:
        UsageError: (exit 2) a registry that is not host[:port] (:func:`check_mirror`),
            given twice, or a mirrored tag that another list of the plan writes (a mirror on
            the list's own registry, or a registry a ``targets:`` entry already names); a
            list with a ``subject`` written as a full reference; a list whose first target
            is an OCI layout (no repository path to mirror).
    """
    given: dict[str, str] = {}
    for text in registries:
        registry = check_mirror(text)
        if registry_key(registry) in given:
            raise UsageError(f"--mirror {text!r} given twice", hint="give each registry once")
        given[registry_key(registry)] = registry
    if not given:
        return list(lists)
    owners: dict[tuple[str, str, str], PlanList] = {}
    for plan in lists:
        for tag in plan.tags:
            owners.setdefault(_target_key(plan.target.with_tag(tag)), plan)
    out: list[PlanList] = []
    for k, plan in enumerate(lists):
        out.append(plan)
        if k + 1 < len(lists) and lists[k + 1].mirror_of is not None:
            continue  # the document's targets: come first
        lead = plan if plan.mirror_of is None else next(
            p for p in reversed(lists[:k + 1]) if p.mirror_of is None)
        if lead.target.layout:
            raise UsageError(
                f"--mirror: {lead.target} (document {lead.document}) is an OCI layout: "
                "a layout has no repository path to mirror to a registry",
                hint="write a registry image: (the layout can be one of its targets:), or "
                "leave out --mirror",
            )
        if lead.subject and _full_subject(lead.subject):
            raise UsageError(
                f"--mirror: {lead.target}: subject {lead.subject!r} names one repository",
                hint="write the subject as @DIGEST or :TAG: it is then looked up in each "
                "target's repository",
            )
        for registry in given.values():
            target = Reference(registry, lead.target.repository, lead.target.tag, None)
            if registry_key(registry) == registry_key(lead.target.registry):
                raise UsageError(
                    f"--mirror {registry}: the registry of {lead.target} (document "
                    f"{lead.document}) itself",
                    hint="a mirror goes to the same repository path on another registry",
                )
            for tag in lead.tags:
                other = owners.get(_target_key(target.with_tag(tag)))
                if other is not None:
                    what = "the target" if other.target.tag == tag else "a tag"
                    raise UsageError(
                        f"--mirror {registry}: {target.with_tag(tag)} is also {what} of "
                        f"{other.target} (document {other.document})",
                        hint="a mirror goes to the same repository path on another registry: "
                        "leave out a registry the plan already writes to",
                    )
            made = dataclasses.replace(lead, target=target, mirror_of=lead.target)
            for tag in made.tags:
                owners[_target_key(target.with_tag(tag))] = made
            out.append(made)
    return out


PLAN_KEYS = {
    "media_type": "media_type", "annotations": "annotations",
    "artifact_type": "artifact_type", "subject": "subject",
    "labels_to_annotations": "labels_to_annotations",
}
_FLAGS = {
    "media_type": "--media-type", "annotations": "--annotation",
    "artifact_type": "--artifact-type", "subject": "--subject",
    "labels_to_annotations": "--labels-to-annotations",
}
"""How each list setting is named in errors: plan keys, or command-line flags."""

_MEDIA_TYPE_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z"
)
_DIGEST_ONLY = re.compile(r"@?(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")


def check_list_settings(
    media_type: str,
    annotations: Mapping[str, str],
    artifact_type: str,
    subject: str,
    labels_to_annotations: bool,
    *,
    where: str,
    keys: Mapping[str, str] | None = None,
) -> str:
    """Check list-level settings before any request; returns the media type choice.

    ``media_type`` must be '' / ``auto`` / ``oci`` / ``docker``; ``artifact_type`` a media
    type (``type/subtype``, RFC 6838); ``subject`` a reference, ``@DIGEST`` or ``:TAG``;
    with ``docker`` none of annotations, artifact type, subject or labels to copy may be
    given (a Docker manifest list has none of them). Errors name the settings as ``keys``
    says (default: the command-line flags).

    Raises:
        PlanError: (exit 2) a setting is invalid; the message starts with ``where``.
    """
    names = keys or _FLAGS
    if media_type not in ("", "auto", "oci", "docker"):
        raise PlanError(
            f"{where}: {names['media_type']}: {media_type!r} is not auto, oci or docker"
        )
    if artifact_type and not _MEDIA_TYPE_RE.match(artifact_type):
        raise PlanError(
            f"{where}: {names['artifact_type']}: {artifact_type!r} is not a media type",
            hint="an artifactType is a media type such as application/vnd.example.sbom+json",
        )
    if subject and not (
        _DIGEST_ONLY.match(subject) or (subject.startswith(":") and reference.valid_tag(
            subject[1:]))
    ):
        try:
            reference.parse(subject)
        except InvalidReferenceError as exc:
            raise PlanError(f"{where}: {names['subject']}: {exc.message}",
                            hint="give a reference, @DIGEST or :TAG") from exc
    if media_type == "docker":
        given = [
            names[key] for key, value in (
                ("annotations", bool(annotations)), ("artifact_type", bool(artifact_type)),
                ("subject", bool(subject)), ("labels_to_annotations", labels_to_annotations),
            ) if value
        ]
        if given:
            key = names["media_type"]
            sep = " " if key.startswith("--") else ": "
            raise PlanError(
                f"{where}: {', '.join(given)} given for a Docker manifest list "
                f"({key}{sep}docker), which has none of them",
                hint=f"use {key}{sep}oci to write an OCI index",
            )
    return media_type


PLAN_LIMIT = 32 * 1024 * 1024
"""Largest plan file read, in bytes (a 1,000-list plan is about 200 KiB)."""


def load(path: Path, *, platform_check: str | None = None) -> list[PlanList]:
    """Read and parse a plan file (see :func:`parse_documents`), at most
    :data:`PLAN_LIMIT` bytes.

    Raises:
        PlanError: the file cannot be read, is larger than :data:`PLAN_LIMIT` (or endless,
            like ``/dev/zero``), is not UTF-8 or is not a valid plan.
    """
    return parse_documents(_read(path), str(path), platform_check=platform_check)


def load_plan(path: Path, *, platform_check: str | None = None) -> Plan:
    """Read and parse a plan file with its ``copy:`` documents (see :func:`parse_plan`).

    Raises:
        PlanError: as :func:`load`.
    """
    return parse_plan(_read(path), str(path), platform_check=platform_check)


def _read(path: Path) -> str:
    """A plan file's text (at most :data:`PLAN_LIMIT` bytes of UTF-8)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(PLAN_LIMIT + 1)
    except OSError as exc:
        raise PlanError(f"cannot read plan {path}: {exc.strerror}") from exc
    if len(data) > PLAN_LIMIT:
        raise PlanError(
            f"plan {path} is larger than {PLAN_LIMIT // (1024 * 1024)} MiB",
            hint="a plan of thousands of lists is a few MiB: check the file, or split it",
        )
    try:
        text = data.decode("utf-8")
        del data  # the text alone while the plan is parsed (a 10,000-list plan is ~5 MB)
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"plan {path} is not UTF-8 text (byte {exc.start} is not valid UTF-8)",
            hint="a plan is a YAML file in UTF-8",
        ) from None
    return text
