"""Property-based tests of ``manyfest.ops.remote_annotate.rewrite_entry`` (annotate --remote).

For indexes of 1-6 descriptors with keys in any order, unknown fields, annotations with
characters Go escapes, with and without platforms, in any layout (docker's 3-space indent,
2 or 4 spaces, tabs, compact, one line with spaces), and any change (platform fields,
annotations set and removed):

* every byte before and after the changed descriptor is kept (the top-level fields and every
  other descriptor exactly as served);
* the result decodes to the old document with exactly the change applied;
* the document's layout is kept: re-laying the result out in its style changes nothing;
* a change that sets what is already there returns the bytes unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyfest import jsonfmt, mediatypes
from manyfest.errors import InvalidManifestError, PlatformError
from manyfest.ops.remote_annotate import EntryChange, entry_spans, rewrite_entry

PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"os": "linux", "architecture": "arm", "variant": "v7"},
    {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1879",
     "os.features": ["win32k"]},
    {"architecture": "unknown", "os": "unknown"},
    {"architecture": "s390x", "os": "linux", "features": ["vx"]},
]
TEXT = st.text(alphabet=st.sampled_from([*'ab.-/_<>&\u2028"\\ ', "\u00e9", "z"]), max_size=8)
KEYS = st.sampled_from(["org.opencontainers.image.title", "a", "b", "vnd.docker.reference.type",
                        "z&<key>", "com.example.x", "é"])

LAYOUTS = ["docker", "two", "four", "tabs", "compact", "spaced"]


def layout(doc: dict[str, Any], style: str, newline: bool) -> bytes:
    compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    out = {
        "docker": lambda: msgspec.json.format(compact, indent=3),
        "two": lambda: msgspec.json.format(compact, indent=2),
        "four": lambda: msgspec.json.format(compact, indent=4),
        "tabs": lambda: jsonfmt.indent(compact, "\t"),
        "compact": lambda: compact,
        "spaced": lambda: msgspec.json.format(compact, indent=0),
    }[style]()
    return out + (b"\n" if newline else b"")


def relaid(raw: bytes, style: str) -> bytes:
    """``raw`` laid out again in ``style`` (trailing whitespace kept)."""
    body = raw.rstrip(b"\n")
    tail = raw[len(body):]
    return {
        "docker": lambda: msgspec.json.format(body, indent=3),
        "two": lambda: msgspec.json.format(body, indent=2),
        "four": lambda: msgspec.json.format(body, indent=4),
        "tabs": lambda: jsonfmt.indent(body, "\t"),
        "compact": lambda: msgspec.json.format(body, indent=-1),
        "spaced": lambda: msgspec.json.format(body, indent=0),
    }[style]() + tail


@st.composite
def descriptors(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "mediaType": draw(st.sampled_from([mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST])),
        "digest": "sha256:" + draw(st.text(alphabet="0123456789abcdef", min_size=64,
                                           max_size=64)),
        "size": draw(st.integers(min_value=1, max_value=10**7)),
    }
    if draw(st.booleans()):
        fields["platform"] = dict(draw(st.sampled_from(PLATFORMS)))
    if draw(st.booleans()):
        fields["annotations"] = draw(st.dictionaries(KEYS, TEXT, max_size=3))
    if draw(st.booleans()):
        fields["artifactType"] = "application/vnd.example+json"
    if draw(st.booleans()):
        fields["urls"] = ["https://example.com/x"]
    order = draw(st.permutations(list(fields)))
    return {k: fields[k] for k in order}


@st.composite
def indexes(draw: st.DrawFn) -> dict[str, Any]:
    manifests = draw(st.lists(descriptors(), min_size=1, max_size=6))
    fields: dict[str, Any] = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
                              "manifests": manifests}
    if draw(st.booleans()):
        fields["annotations"] = {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    order = draw(st.permutations(list(fields)))
    return {k: fields[k] for k in order}


CHANGES = st.builds(
    EntryChange,
    os=st.sampled_from(["", "linux"]),
    arch=st.sampled_from(["", "", "amd64", "arm64", "arm"]),
    variant=st.sampled_from([None, None, "", "v7", "v8"]),
    os_version=st.sampled_from(["", "10.0.1"]),
    os_features=st.sampled_from([(), ("sse4",), ("win32k", "x")]),
    annotations=st.lists(st.tuples(KEYS, TEXT), max_size=3).map(tuple),
    remove_annotations=st.lists(KEYS, max_size=2).map(tuple),
)


def expected(desc: dict[str, Any], change: EntryChange) -> dict[str, Any]:
    """The descriptor ``annotate`` should make, as a value (key order not compared)."""
    out = dict(desc)
    if change.touches_platform:
        p = dict(desc.get("platform") or {})
        arch = change.arch or p.get("architecture", "")
        variant = change.variant
        if variant is None:
            variant = p.get("variant", "") if not change.arch or change.arch == p.get(
                "architecture") else ""
        features = list(p.get("os.features", []))
        features += [f for f in dict.fromkeys(change.os_features) if f not in features]
        new = {**p, "architecture": arch, "os": change.os or p.get("os", ""),
               "os.version": change.os_version or p.get("os.version", ""),
               "os.features": features, "variant": variant}
        out["platform"] = {k: v for k, v in new.items() if v or k in ("features",)}
    annotations = dict(desc.get("annotations", {}))
    for key in change.remove_annotations:
        annotations.pop(key, None)
    annotations.update(change.annotations)
    if annotations != desc.get("annotations", {}):
        if annotations:
            out["annotations"] = annotations
        else:
            out.pop("annotations", None)
    return out


@settings(max_examples=400, deadline=None)
@given(indexes(), st.sampled_from(LAYOUTS), st.booleans(), st.data(), CHANGES)
def test_only_the_changed_descriptor_changes(doc: dict[str, Any], style: str, newline: bool,
                                             data: st.DataObject, change: EntryChange) -> None:
    raw = layout(doc, style, newline)
    position = data.draw(st.integers(min_value=0, max_value=len(doc["manifests"]) - 1))
    spans = entry_spans(raw)
    assert [json.loads(raw[s:e]) for s, e in spans] == doc["manifests"]  # spans are right
    try:
        new = rewrite_entry(raw, position, change)
    except PlatformError:
        return  # an invalid resulting platform (arm64 + v7, unknown + os): refused
    start, end = spans[position]
    assert new[:start] == raw[:start]
    assert new[len(new) - (len(raw) - end):] == raw[end:]
    new_doc = json.loads(new)
    want = dict(doc)
    want["manifests"] = [expected(d, change) if i == position else d
                         for i, d in enumerate(doc["manifests"])]
    assert new_doc == want
    assert relaid(new, style) == new  # the layout is the document's
    if new != raw:
        # Members that did not change keep their exact text.
        changed_desc = new[start: len(new) - (len(raw) - end)]
        for key in ("mediaType", "digest", "size", "artifactType"):
            if key in doc["manifests"][position]:
                text = json.dumps(doc["manifests"][position][key], ensure_ascii=False,
                                  separators=(",", ":")).encode()
                assert text in changed_desc.replace(b"\n", b"").replace(b" ", b"")


@settings(max_examples=200, deadline=None)
@given(indexes(), st.sampled_from(LAYOUTS), st.data())
def test_setting_what_is_there_changes_nothing(doc: dict[str, Any], style: str,
                                               data: st.DataObject) -> None:
    raw = layout(doc, style, False)
    position = data.draw(st.integers(min_value=0, max_value=len(doc["manifests"]) - 1))
    desc = doc["manifests"][position]
    p = desc.get("platform")
    change = EntryChange(
        os=p["os"] if p else "",
        arch=p["architecture"] if p else "",
        variant=p.get("variant", "") if p else None,
        os_features=tuple(p.get("os.features", [])) if p else (),
        annotations=tuple(desc.get("annotations", {}).items()),
        remove_annotations=("not-there",),
    )
    try:
        assert rewrite_entry(raw, position, change) is raw
    except PlatformError:
        assert p is not None
        assert p["os"] == "unknown"


def test_docker_layout_exact_bytes() -> None:
    """One case spelled out: docker's 3-space list, an annotation added before platform."""
    raw = (
        b'{\n   "schemaVersion": 2,\n   "mediaType": "' + mediatypes.DOCKER_LIST.encode()
        + b'",\n   "manifests": [\n      {\n         "mediaType": "m",\n         "size": 1,\n'
        b'         "digest": "sha256:1",\n         "platform": {\n            "architecture": '
        b'"arm",\n            "os": "linux",\n            "variant": "v7"\n         }\n      }\n'
        b"   ]\n}"
    )
    new = rewrite_entry(raw, 0, EntryChange(variant="v6", annotations=(("k", "<&>"),)))
    assert new == raw.replace(
        b'"platform"', b'"annotations": {\n            "k": "\\u003c\\u0026\\u003e"\n'
        b'         },\n         "platform"'
    ).replace(b'"v7"', b'"v6"')
    cleared = rewrite_entry(raw, 0, EntryChange(variant=""))
    assert cleared == raw.replace(b',\n            "variant": "v7"', b"")


def test_not_an_index() -> None:
    with pytest.raises(InvalidManifestError, match="no manifests array"):
        rewrite_entry(b'{"schemaVersion":2,"config":{}}', 0, EntryChange(arch="amd64"))
    with pytest.raises(InvalidManifestError, match="no entry 3"):
        rewrite_entry(b'{"manifests":[]}', 3, EntryChange(arch="amd64"))
