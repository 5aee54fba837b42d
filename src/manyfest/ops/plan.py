"""Publish plans: manifest-tool's YAML spec, one list per document, hundreds per file.

A document (estesp/manifest-tool ``v2/pkg/types``)::

    image: registry/repo:tag          # the target list
    tags: ["1.0", "latest"]           # extra tags (optional)
    annotations: {key: value}         # index annotations (optional; makes an OCI index)
    manifests:
      - image: registry/repo-arm:tag  # a source image
        platform:                     # optional override
          architecture: arm
          os: linux
          variant: v7
          os.version: "10.0.17763"    # or osversion (manifest-tool's spelling)
          os.features: [win32k]       # or osfeatures

Loading: PyYAML's ``BaseLoader`` via ``load_all`` (every scalar stays the string written, so
tags ``1.10`` and ``010`` and ``architecture: 386`` keep their text), then ``msgspec.convert``
into Structs that forbid unknown keys; errors name the document and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from manyfest import reference
from manyfest.errors import InvalidReferenceError, PlanError
from manyfest.platform import Platform
from manyfest.reference import Reference


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


class ListSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One plan document: a target list."""

    image: str
    manifests: list[ManifestSpec]
    tags: list[str] = msgspec.field(default_factory=list)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


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
        return Platform(
            o.os or config.os,
            o.architecture or config.architecture,
            o.variant or config.variant,
            o.os_version or config.os_version,
            tuple(o.os_features) or config.os_features,
        )


@dataclass(frozen=True, slots=True)
class PlanList:
    """A validated target list: target reference, all tags, annotations, entries in order."""

    target: Reference
    extra_tags: tuple[str, ...]
    annotations: dict[str, str]
    entries: tuple[PlanEntry, ...]
    document: int

    @property
    def tags(self) -> list[str]:
        """Every tag: the target's, then the extra ones."""
        return [self.target.tag or "latest", *self.extra_tags]


class _PlanLoader(yaml.BaseLoader):
    """BaseLoader (every scalar a string) that still reads a plain null as None."""


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


def parse_documents(text: str, source: str = "plan") -> list[PlanList]:
    """Parse plan YAML text (one list per document).

    Raises:
        PlanError: YAML syntax errors, unknown keys, missing fields, wrong shapes, invalid
            references or tags; the message names the document (1-based) and the field.
    """
    try:
        documents = list(yaml.load_all(text, Loader=_PlanLoader))
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from exc
    lists: list[PlanList] = []
    number = 0
    for number, doc in enumerate(documents, start=1):
        if doc is None or doc == "":
            continue
        where = f"{source}: document {number}"
        if not isinstance(doc, dict):
            raise PlanError(f"{where}: expected a mapping with image, tags and manifests")
        doc = _drop_null_keys(doc)
        _normalise_platform(doc, where)
        try:
            spec = msgspec.convert(doc, ListSpec)
        except msgspec.ValidationError as exc:
            raise PlanError(f"{where}: {exc}") from exc
        lists.append(_validate(spec, where, number))
    if not lists:
        raise PlanError(f"{source}: no list in the plan", hint="add at least one YAML document")
    return lists


def _validate(spec: ListSpec, where: str, number: int) -> PlanList:
    try:
        target = reference.parse(spec.image)
    except InvalidReferenceError as exc:
        raise PlanError(f"{where}: image: {exc}") from exc
    if target.digest:
        raise PlanError(f"{where}: image: the target {spec.image!r} must be a tag, not a digest")
    for tag in spec.tags:
        if not reference.valid_tag(tag):
            raise PlanError(f"{where}: tags: invalid tag {tag!r}")
    if not spec.manifests:
        raise PlanError(f"{where}: manifests: a list needs at least one image")
    entries = []
    for i, m in enumerate(spec.manifests):
        try:
            ref = reference.parse(m.image)
        except InvalidReferenceError as exc:
            raise PlanError(f"{where}: manifests[{i}].image: {exc}") from exc
        entries.append(PlanEntry(ref, m.platform))
    extra = tuple(t for t in dict.fromkeys(spec.tags) if t != target.tag)
    return PlanList(target, extra, dict(spec.annotations), tuple(entries), number)


def load(path: Path) -> list[PlanList]:
    """Read and parse a plan file (see :func:`parse_documents`).

    Raises:
        PlanError: the file cannot be read or is not a valid plan.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan {path}: {exc.strerror}") from exc
    return parse_documents(text, str(path))
