"""Property-based tests of manyfest.content + models: decoding never leaks, bytes stay exact.

* Arbitrary bytes, arbitrary JSON and valid manifests with one node replaced by arbitrary
  JSON: ``Manifest.from_bytes``, ``.image()``, ``.index()`` and ``.blobs()`` fail only with
  manyfest's own errors (``UnsupportedMediaTypeError`` and its subclass
  ``InvalidManifestError``), never msgspec's, never KeyError/TypeError/RecursionError.
* Valid image manifests and indexes with unknown fields at every level, in any JSON layout:
  ``raw`` is exactly the input, ``digest`` its sha256, the known fields decode as written.
* Lists built by ``encode_list`` from a source index's exact descriptors (as the engine's
  ``_flatten`` passes them) mixed with built entries: the output parses, entries keep their
  order, every exact descriptor appears verbatim (only re-indented), and each style has its
  layout (docker: 3-space indent, no trailing newline).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyfest import engine, mediatypes, reference
from manyfest.content import Entry, JsonStyle, Manifest, encode_list, list_media_type
from manyfest.errors import InvalidManifestError, UnsupportedMediaTypeError
from manyfest.platform import Platform

DM = mediatypes.DOCKER_MANIFEST
OM = mediatypes.OCI_MANIFEST
MEDIA_TYPES = [
    *sorted(mediatypes.MANIFEST_TYPES),
    "",
    "application/json",
    "text/plain",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
]

# --- JSON values and documents -------------------------------------------------------------

# Strings that matter to JSON writers: HTML characters Go escapes, U+2028/9, non-ASCII,
# quotes and backslashes.
tricky_text = st.text(
    st.sampled_from([*"ab<>&\"\\/é\u2028\u2029\x00\n\t ", "\U0001f600"]), max_size=8
)
text = st.one_of(st.text(max_size=10), tricky_text)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)
    ),
    max_leaves=15,
)

KNOWN = {
    "schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "annotations",
    "digest", "size", "urls", "platform", "artifactType", "architecture", "os", "os.version",
    "os.features", "variant", "features",
}
unknown_fields = st.dictionaries(
    text.filter(lambda k: k not in KNOWN), json_values, max_size=3
)
hex_digest = st.sampled_from([("sha256", 32), ("sha512", 64)]).flatmap(
    lambda a: st.binary(min_size=a[1], max_size=a[1]).map(lambda b: f"{a[0]}:{b.hex()}")
)
annotations = st.dictionaries(text, text, max_size=3)


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part)
    return out


def _optional(key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


platform_doc = st.builds(
    _merge,
    st.fixed_dictionaries(
        {"architecture": st.sampled_from(["amd64", "arm", "arm64", "386", "s390x", "unknown"]),
         "os": st.sampled_from(["linux", "windows", "unknown"])}
    ),
    _optional("variant", st.sampled_from(["v6", "v7", "v8"])),
    _optional("os.version", st.sampled_from(["10.0.17763.1879", "1.10"])),
    _optional("os.features", st.lists(text, max_size=2)),
    _optional("features", st.lists(text, max_size=2)),
    unknown_fields,
)


def descriptor(media_types: list[str], with_platform: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A valid OCI descriptor, with optional fields and unknown ones."""
    return st.builds(
        _merge,
        st.fixed_dictionaries(
            {"mediaType": st.sampled_from(media_types), "digest": hex_digest,
             "size": st.integers(0, 2**40)}
        ),
        _optional("urls", st.lists(text, max_size=2)),
        _optional("annotations", annotations),
        _optional("platform", platform_doc) if with_platform else st.just({}),
        _optional("artifactType", text),
        unknown_fields,
    )


LAYER_TYPES = [mediatypes.DOCKER_LAYER, mediatypes.OCI_LAYER, mediatypes.DOCKER_FOREIGN_LAYER]
CONFIG_TYPES = [mediatypes.DOCKER_CONFIG, mediatypes.OCI_CONFIG]

image_doc = st.builds(
    _merge,
    st.fixed_dictionaries(
        {"schemaVersion": st.just(2),
         "config": descriptor(CONFIG_TYPES, False),
         "layers": st.lists(descriptor(LAYER_TYPES, False), max_size=5)}
    ),
    st.one_of(st.just({}), st.sampled_from([DM, OM]).map(lambda t: {"mediaType": t})),
    _optional("subject", descriptor([OM], False)),
    _optional("annotations", annotations),
    unknown_fields,
)
index_doc = st.builds(
    _merge,
    st.fixed_dictionaries(
        {"schemaVersion": st.just(2),
         "manifests": st.lists(descriptor([DM, OM, mediatypes.OCI_INDEX], True), max_size=5)}
    ),
    st.one_of(
        st.just({}),
        st.sampled_from([mediatypes.DOCKER_LIST, mediatypes.OCI_INDEX]).map(
            lambda t: {"mediaType": t}
        ),
    ),
    _optional("annotations", annotations),
    unknown_fields,
)


@st.composite
def serialised(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> tuple[Any, bytes]:
    """A document and its bytes in one of many JSON layouts (any writer's)."""
    doc = draw(docs)
    indent = draw(st.sampled_from([None, 0, 1, 2, 3, 4, "\t"]))
    separators = draw(st.sampled_from([None, (",", ":"), (", ", " : ")]))
    ensure_ascii = draw(st.booleans())
    sort_keys = draw(st.booleans())
    body = json.dumps(
        doc, indent=indent, separators=separators, ensure_ascii=ensure_ascii, sort_keys=sort_keys
    )
    trailing = draw(st.sampled_from(["", "\n", " \r\n"]))
    return doc, (body + trailing).encode()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}
    return [_replace(v, rest, value) if i == head else v for i, v in enumerate(node)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid manifest or index with one node replaced by arbitrary JSON (or removed)."""
    doc = draw(st.one_of(image_doc, index_doc))
    path = draw(st.sampled_from(_paths(doc)))
    if path and draw(st.booleans()):  # remove the node
        parent_path, last = path[:-1], path[-1]
        parent = doc
        for key in parent_path:
            parent = parent[key]
        trimmed = (
            {k: v for k, v in parent.items() if k != last}
            if isinstance(parent, dict)
            else [v for i, v in enumerate(parent) if i != last]
        )
        doc = _replace(doc, parent_path, trimmed)
    else:
        doc = _replace(doc, path, draw(json_values))
    return json.dumps(doc).encode()


# --- decoding never leaks foreign exceptions -----------------------------------------------


def exercise(raw: bytes, content_type: str) -> Manifest | None:
    """Every decoding API on ``raw``; only manyfest's media-type errors may come out."""
    try:
        m = Manifest.from_bytes(raw, content_type)
    except UnsupportedMediaTypeError:
        return None
    assert m.raw is raw
    assert m.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert m.size == len(raw)
    assert m.media_type in mediatypes.MANIFEST_TYPES
    for decode in (m.image, m.index, m.blobs):
        with contextlib.suppress(InvalidManifestError):
            decode()
    return m


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(MEDIA_TYPES))
def test_arbitrary_bytes_fail_only_with_manyfest_errors(raw: bytes, content_type: str) -> None:
    exercise(raw, content_type)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(MEDIA_TYPES))
def test_arbitrary_json_fails_only_with_manyfest_errors(value: Any, content_type: str) -> None:
    exercise(json.dumps(value).encode(), content_type)


@settings(max_examples=150, deadline=None)
@given(mutated(), st.sampled_from(MEDIA_TYPES))
def test_damaged_manifests_fail_only_with_manyfest_errors(raw: bytes, content_type: str) -> None:
    exercise(raw, content_type)


# --- valid documents: exact bytes, decoded as written ---------------------------------------


def _check_descriptor(decoded: Any, written: dict[str, Any]) -> None:
    assert decoded.media_type == written["mediaType"]
    assert decoded.digest == written["digest"]
    assert decoded.size == written["size"]
    assert decoded.annotations == written.get("annotations", {})
    assert decoded.urls == written.get("urls", [])
    assert decoded.artifact_type == written.get("artifactType", "")


@settings(max_examples=100, deadline=None)
@given(serialised(image_doc), st.sampled_from(MEDIA_TYPES))
def test_image_manifests_keep_exact_bytes(item: tuple[Any, bytes], content_type: str) -> None:
    doc, raw = item
    m = Manifest.from_bytes(raw, content_type)
    assert m.raw is raw
    assert m.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert m.media_type == doc.get("mediaType", OM if content_type not in
                                   mediatypes.MANIFEST_TYPES else content_type)
    image = m.image()
    _check_descriptor(image.config, doc["config"])
    assert len(image.layers) == len(doc["layers"])
    for decoded, written in zip(image.layers, doc["layers"], strict=True):
        _check_descriptor(decoded, written)
    assert [b.digest for b in m.blobs()] == [doc["config"]["digest"]] + [
        layer["digest"] for layer in doc["layers"]
    ]
    if "subject" in doc:
        assert image.subject is not None
        _check_descriptor(image.subject, doc["subject"])


@settings(max_examples=100, deadline=None)
@given(serialised(index_doc), st.sampled_from(MEDIA_TYPES))
def test_indexes_keep_exact_bytes(item: tuple[Any, bytes], content_type: str) -> None:
    doc, raw = item
    m = Manifest.from_bytes(raw, content_type)
    assert m.raw is raw
    assert m.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    inferred = (
        content_type if content_type in mediatypes.MANIFEST_TYPES else mediatypes.OCI_INDEX
    )
    assert m.media_type == doc.get("mediaType", inferred)
    index = m.index()
    assert index.annotations == doc.get("annotations", {})
    assert len(index.manifests) == len(doc["manifests"])
    # The engine's exact descriptors line up with the decoded ones, each as written.
    raws = engine._RAW_INDEX.decode(raw).manifests
    assert [json.loads(bytes(r)) for r in raws] == doc["manifests"]
    for decoded, written in zip(index.manifests, doc["manifests"], strict=True):
        _check_descriptor(decoded, written)
        if "platform" not in written:
            assert decoded.platform is None
            continue
        p, wp = decoded.platform, written["platform"]
        assert p is not None
        assert (p.architecture, p.os, p.variant, p.os_version, p.os_features, p.features) == (
            wp["architecture"], wp["os"], wp.get("variant", ""), wp.get("os.version", ""),
            wp.get("os.features", []), wp.get("features", []),
        )


# --- lists built from exact descriptors -----------------------------------------------------


class _RawIndex(msgspec.Struct):
    """Each entry of a built list as its exact bytes, to compare with what went in."""

    manifests: list[msgspec.Raw] = msgspec.field(default_factory=list)


_RAW = msgspec.json.Decoder(_RawIndex)

built_entry = st.builds(
    Entry,
    st.sampled_from([DM, OM]),
    st.integers(0, 2**40),
    hex_digest,
    st.one_of(
        st.none(),
        st.builds(
            Platform,
            st.sampled_from(["linux", "windows"]),
            st.sampled_from(["amd64", "arm", "386"]),
            st.sampled_from(["", "v7"]),
            st.sampled_from(["", "10.0.17763.1879"]),
            st.lists(tricky_text, max_size=2).map(tuple),
        ),
    ),
    st.lists(st.tuples(text, text), max_size=2).map(tuple),
)


@st.composite
def list_entries(draw: st.DrawFn) -> list[Entry]:
    """Entries taken from a source index's exact descriptors as the engine's ``_flatten``
    takes them (its own decoder, ``Child.entry()``), mixed with built ones."""
    _, raw = draw(serialised(index_doc))
    source = Manifest.from_bytes(raw)
    doc = source.index()
    raws = engine._RAW_INDEX.decode(source.raw).manifests
    ref = reference.parse("registry.example.com/src:1")
    exact = [
        engine.Child(
            engine.Source(ref.with_digest(d.digest), Manifest(b"{}", d.media_type, d.digest),
                          Platform("linux", "amd64")),
            None,
            descriptor=bytes(r),
        ).entry()
        for d, r in zip(doc.manifests, raws, strict=True)
    ]
    built = draw(st.lists(built_entry, max_size=3))
    return draw(st.permutations(exact + built))


def _normal(raw: bytes) -> bytes:
    return msgspec.json.format(raw, indent=0)


@settings(max_examples=120, deadline=None)
@given(
    list_entries(),
    st.one_of(st.none(), annotations),
    st.sampled_from(["docker", "manifest-tool", "compact"]),
)
def test_encode_list_keeps_exact_descriptors(
    entries: list[Entry], index_annotations: dict[str, str] | None, style: JsonStyle
) -> None:
    # index annotations need an OCI index (a Docker list has none): forced when given
    forced = mediatypes.OCI_INDEX if index_annotations else None
    m = encode_list(entries, annotations=index_annotations, style=style, media_type=forced)
    assert m.digest == "sha256:" + hashlib.sha256(m.raw).hexdigest()
    assert m.media_type == (forced or list_media_type(entries))
    assert Manifest.from_bytes(m.raw) == m
    doc = json.loads(m.raw)
    assert doc["mediaType"] == m.media_type
    assert doc.get("annotations", {}) == (index_annotations or {})
    out = _RAW.decode(m.raw).manifests
    assert len(out) == len(entries)
    for entry, written, value in zip(entries, out, doc["manifests"], strict=True):
        if entry.descriptor is not None:
            assert _normal(bytes(written)) == _normal(entry.descriptor)
            assert value == json.loads(entry.descriptor)
        else:
            assert value["mediaType"] == entry.media_type
            assert value["size"] == entry.size
            assert value["digest"] == entry.digest
            assert value.get("annotations", {}) == dict(entry.annotations)
            if entry.platform is None:
                assert "platform" not in value
            else:
                p = entry.platform
                assert value["platform"] == {
                    k: v
                    for k, v in {
                        "architecture": p.architecture, "os": p.os,
                        "os.version": p.os_version, "os.features": list(p.os_features),
                        "variant": p.variant,
                    }.items()
                    if v
                }
    indent = {"docker": 3, "manifest-tool": 2, "compact": -1}[style]
    assert m.raw == msgspec.json.format(m.raw, indent=indent)
    assert not m.raw.endswith(b"\n")
    if style == "docker":
        assert m.raw.startswith(b'{\n   "schemaVersion": 2,\n   "mediaType": ')


# --- regression tests (minimal examples the properties found) -------------------------------

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("raw", "call"),
    [
        # msgspec.ValidationError leaked from .image()/.blobs()/.index().
        (b'{"schemaVersion":2,"mediaType":"' + DM.encode() + b'","config":"x"}', "image"),
        (b'{"schemaVersion":2,"mediaType":"' + DM.encode() + b'","config":"x"}', "blobs"),
        (b'{"schemaVersion":2,"mediaType":"' + DM.encode() + b'"}', "image"),
        (b'{"schemaVersion":2,"manifests":[1]}', "index"),
        (b'{"schemaVersion":2,"manifests":{}}', "index"),
        (
            b'{"schemaVersion":2,"manifests":[{"digest":"' + DIGEST.encode()
            + b'","size":"1"}]}',
            "index",
        ),
    ],
)
def test_malformed_bodies_raise_invalid_manifest(raw: bytes, call: str) -> None:
    m = Manifest.from_bytes(raw)
    with pytest.raises(InvalidManifestError) as info:
        getattr(m, call)()
    assert info.value.message.startswith(f"manifest {m.digest} is not a valid ")
    assert isinstance(info.value, UnsupportedMediaTypeError)


def test_deeply_nested_body_raises_invalid_manifest() -> None:
    # msgspec raises RecursionError (not DecodeError) on deep nesting: it leaked.
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InvalidManifestError):
        Manifest.from_bytes(b'{"schemaVersion":2,"x":' + deep + b"}")
    raw = b'{"schemaVersion":2,"mediaType":"' + DM.encode() + b'","config":' + deep + b"}"
    with pytest.raises(InvalidManifestError):
        Manifest.from_bytes(raw)


def test_exact_descriptor_is_not_html_escaped() -> None:
    # encode_list escaped '<', '>', '&' (Go's json.Marshal) over the whole list, exact
    # descriptors included: their bytes changed. Built entries are still escaped.
    descriptor = b'{"mediaType":"' + OM.encode() + b'","size":0,"digest":"' + DIGEST.encode() + (
        b'","annotations":{"<":"a&b"}}'
    )
    built = Entry(OM, 1, DIGEST, Platform("linux", "amd64", os_features=("<&>",)))
    m = encode_list(
        [Entry(OM, 0, DIGEST, None, descriptor=descriptor), built],
        annotations={"x": "&"},
        style="compact",
    )
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":"' + mediatypes.OCI_INDEX.encode() + b'","manifests":['
        + descriptor + b',{"mediaType":"' + OM.encode() + b'","size":1,"digest":"'
        + DIGEST.encode() + b'","platform":{"architecture":"amd64","os":"linux",'
        b'"os.features":["\\u003c\\u0026\\u003e"]}}],"annotations":{"x":"\\u0026"}}'
    )


def test_compact_style_compacts_exact_descriptors() -> None:
    # The compact style kept the whitespace of a source index's descriptor as it was.
    descriptor = b'{\n  "mediaType": "' + OM.encode() + b'",\n  "size": 0,\n  "digest": "' + (
        DIGEST.encode() + b'"\n}'
    )
    m = encode_list([Entry(OM, 0, DIGEST, None, descriptor=descriptor)], style="compact")
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":"' + mediatypes.OCI_INDEX.encode() + b'","manifests":'
        b'[{"mediaType":"' + OM.encode() + b'","size":0,"digest":"' + DIGEST.encode() + b'"}]}'
    )
