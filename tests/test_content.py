"""Unit tests for manyfest.content + models: list bytes as docker writes them, exact bytes kept."""

from __future__ import annotations

import hashlib
import json

import pytest

from manyfest import mediatypes
from manyfest.content import Entry, Manifest, encode_list, list_media_type
from manyfest.errors import UnsupportedMediaTypeError
from manyfest.models import Descriptor, PlatformDoc
from manyfest.platform import Platform

DM = mediatypes.DOCKER_MANIFEST
AMD64 = "sha256:72a637af95351428bb5decb5ed57270597db6167840c3025045a19962e29a20c"
ARM = "sha256:04b17299182419c3b2e9dba7bce997fce4cf9c919c51a3a507182b35f6253efd"
ARM64 = "sha256:32f1f8104da27577582b31518655a0b646f670e094d8cadcaf093f730dd71aef"
WIN = "sha256:d8fbe66bc532eef453f8ddd702b5f607f8060d9f713bf4d0b0b2b8f6ede9a341"
DOCKER_LIST_DIGEST = "sha256:02f16f09f8285fc9e8eaf8b0061c726a2e0d904f9f73a9e55e287a19863378c3"

DOCKER_ENTRIES = [
    Entry(DM, 523, AMD64, Platform("linux", "amd64")),
    Entry(DM, 523, ARM, Platform("linux", "arm", "v7")),
    Entry(DM, 523, ARM64, Platform("linux", "arm64", "v8")),
    Entry(DM, 523, WIN, Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",))),
]

# What docker 28.2 `docker manifest push` wrote for these four children
# (json.MarshalIndent(list, "", "   "), no trailing newline).
DOCKER_LIST_TEXT = """{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 523,
         "digest": "<AMD64>",
         "platform": {
            "architecture": "amd64",
            "os": "linux"
         }
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 523,
         "digest": "<ARM>",
         "platform": {
            "architecture": "arm",
            "os": "linux",
            "variant": "v7"
         }
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 523,
         "digest": "<ARM64>",
         "platform": {
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8"
         }
      },
      {
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 523,
         "digest": "<WIN>",
         "platform": {
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.17763.1879",
            "os.features": [
               "win32k"
            ]
         }
      }
   ]
}"""
for _name, _digest in {"<AMD64>": AMD64, "<ARM>": ARM, "<ARM64>": ARM64, "<WIN>": WIN}.items():
    DOCKER_LIST_TEXT = DOCKER_LIST_TEXT.replace(_name, _digest)


def test_docker_list_digest_equals_dockers() -> None:
    m = encode_list(DOCKER_ENTRIES)
    assert m.digest == DOCKER_LIST_DIGEST
    assert m.media_type == mediatypes.DOCKER_LIST
    assert m.size == 1528
    assert m.raw == DOCKER_LIST_TEXT.encode()
    assert hashlib.sha256(DOCKER_LIST_TEXT.encode()).hexdigest() == DOCKER_LIST_DIGEST[7:]


def test_docker_style_layout() -> None:
    raw = encode_list(DOCKER_ENTRIES).raw
    assert not raw.endswith(b"\n")
    assert raw.startswith(b'{\n   "schemaVersion": 2,\n   "mediaType": ')
    doc = json.loads(raw)
    assert list(doc) == ["schemaVersion", "mediaType", "manifests"]
    assert [list(e) for e in doc["manifests"]] == [
        ["mediaType", "size", "digest", "platform"]
    ] * 4
    assert list(doc["manifests"][3]["platform"]) == [
        "architecture", "os", "os.version", "os.features"
    ]


def test_platform_key_order_with_every_field() -> None:
    entry = Entry(DM, 1, AMD64, Platform("windows", "arm", "v7", "10.0", ("a", "b")))
    raw = encode_list([entry], style="compact").raw
    assert raw == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list'
        b'.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest'
        b'.v2+json","size":1,"digest":"' + AMD64.encode() + b'","platform":{"architecture":'
        b'"arm","os":"windows","os.version":"10.0","os.features":["a","b"],"variant":"v7"}}]}'
    )


def test_manifest_tool_style_two_spaces() -> None:
    m = encode_list(DOCKER_ENTRIES[:2], style="manifest-tool")
    expected = (
        "{\n"
        '  "schemaVersion": 2,\n'
        '  "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",\n'
        '  "manifests": [\n'
        "    {\n"
        '      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
        '      "size": 523,\n'
        f'      "digest": "{AMD64}",\n'
        '      "platform": {\n'
        '        "architecture": "amd64",\n'
        '        "os": "linux"\n'
        "      }\n"
        "    },\n"
        "    {\n"
        '      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",\n'
        '      "size": 523,\n'
        f'      "digest": "{ARM}",\n'
        '      "platform": {\n'
        '        "architecture": "arm",\n'
        '        "os": "linux",\n'
        '        "variant": "v7"\n'
        "      }\n"
        "    }\n"
        "  ]\n"
        "}"
    ).encode()
    assert m.raw == expected
    assert m.digest == "sha256:" + hashlib.sha256(expected).hexdigest()


def test_compact_style() -> None:
    m = encode_list(DOCKER_ENTRIES[:1], style="compact")
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2'
        '+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"'
        f',"size":523,"digest":"{AMD64}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}'
    ).encode()
    assert m.raw == expected
    assert m.size == len(expected)


def test_entry_without_platform_and_with_annotations() -> None:
    entries = [
        Entry(mediatypes.OCI_MANIFEST, 7, AMD64, None, (("k", "v"), ("a", "b"))),
        Entry(mediatypes.OCI_MANIFEST, 8, ARM, Platform("linux", "arm", "v6")),
    ]
    m = encode_list(entries, style="compact", annotations={"x": "1"})
    assert m.media_type == mediatypes.OCI_INDEX
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":'
        b'[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7,"digest":"'
        + AMD64.encode()
        + b'","annotations":{"k":"v","a":"b"}},{"mediaType":"application/vnd.oci.image.manifest'
        b'.v1+json","size":8,"digest":"'
        + ARM.encode()
        + b'","platform":{"architecture":"arm","os":"linux","variant":"v6"}}],'
        b'"annotations":{"x":"1"}}'
    )


def test_empty_list() -> None:
    m = encode_list([], style="compact")
    assert m.raw == (
        b'{"schemaVersion":2,"mediaType":'
        b'"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}'
    )
    assert encode_list([]).raw == (
        b'{\n   "schemaVersion": 2,\n'
        b'   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",\n'
        b'   "manifests": []\n}'
    )


def test_forced_media_type() -> None:
    m = encode_list(DOCKER_ENTRIES[:1], style="compact", media_type=mediatypes.OCI_INDEX)
    assert m.media_type == mediatypes.OCI_INDEX
    assert json.loads(m.raw)["mediaType"] == mediatypes.OCI_INDEX


OCI_ENTRY = Entry(mediatypes.OCI_MANIFEST, 1, AMD64, Platform("linux", "amd64"))
DOCKER_ENTRY = Entry(DM, 1, ARM, Platform("linux", "arm", "v7"))


@pytest.mark.parametrize(
    ("entries", "annotations", "expected"),
    [
        ([OCI_ENTRY], None, mediatypes.OCI_INDEX),
        ([OCI_ENTRY], {"a": "b"}, mediatypes.OCI_INDEX),
        ([OCI_ENTRY, DOCKER_ENTRY], None, mediatypes.OCI_INDEX),
        ([DOCKER_ENTRY, OCI_ENTRY], None, mediatypes.DOCKER_LIST),
        ([DOCKER_ENTRY], None, mediatypes.DOCKER_LIST),
        ([DOCKER_ENTRY], {}, mediatypes.DOCKER_LIST),
        ([], None, mediatypes.DOCKER_LIST),
    ],
)
def test_list_media_type(
    entries: list[Entry], annotations: dict[str, str] | None, expected: str
) -> None:
    # docker's first-entry rule only: annotations never switch a Docker list to OCI
    assert list_media_type(entries) == expected
    assert encode_list(entries, annotations=annotations).media_type == expected


@pytest.mark.parametrize("entries", [[DOCKER_ENTRY], [DOCKER_ENTRY, OCI_ENTRY], []])
def test_annotations_on_a_docker_list_are_refused(entries: list[Entry]) -> None:
    # They were silently turned into an OCI index; a Docker list has no annotations.
    with pytest.raises(ValueError, match="a Docker manifest list has no annotations"):
        encode_list(entries, annotations={"a": "b"})
    with pytest.raises(ValueError, match="has no annotations, artifactType"):
        encode_list(entries, annotations={"a": "b"}, artifact_type="application/x.y",
                    media_type=mediatypes.DOCKER_LIST)


def test_docker_style_escapes_html_like_go() -> None:
    # Go's json.MarshalIndent (docker, manifest-tool) writes & < > in strings as \u0026 ...
    entry = Entry(DM, 1, AMD64, Platform("linux", "amd64", os_features=("a&b<c>",)))
    raw = encode_list([entry], style="compact", annotations={"u": "https://x/?a=1&b=2"},
                      media_type=mediatypes.OCI_INDEX).raw
    assert b'"a\\u0026b\\u003cc\\u003e"' in raw
    assert b'"https://x/?a=1\\u0026b=2"' in raw


# --- Manifest.from_bytes ----------------------------------------------------------------------

OCI_IMAGE_NO_MT = (
    b'{\n  "schemaVersion" : 2,\n  "config": {"mediaType": "application/vnd.oci.image.config.v1'
    b'+json", "digest": "sha256:' + b"a" * 64 + b'", "size": 2, "x-unknown": [1.50]},\n'
    b'  "layers": [],\n  "zzz": {"keep": "\\u00e9"}\n}\n'
)


def test_from_bytes_keeps_exact_bytes_and_infers_oci_manifest() -> None:
    m = Manifest.from_bytes(OCI_IMAGE_NO_MT)
    assert m.raw is OCI_IMAGE_NO_MT
    assert m.media_type == mediatypes.OCI_MANIFEST
    assert m.digest == "sha256:" + hashlib.sha256(OCI_IMAGE_NO_MT).hexdigest()
    assert m.size == len(OCI_IMAGE_NO_MT)
    assert not m.is_index
    (config,) = m.blobs()
    assert config == Descriptor(
        media_type=mediatypes.OCI_CONFIG, digest="sha256:" + "a" * 64, size=2
    )


def test_from_bytes_infers_oci_index() -> None:
    raw = b'{"schemaVersion":2,"manifests":[{"digest":"' + AMD64.encode() + b'","size":3}]}'
    m = Manifest.from_bytes(raw, "application/json")
    assert m.media_type == mediatypes.OCI_INDEX
    assert m.is_index
    assert m.index().manifests == [Descriptor(digest=AMD64, size=3)]


def test_body_media_type_wins_over_content_type() -> None:
    raw = b'{"schemaVersion":2,"mediaType":"' + DM.encode() + b'","config":{}}'
    m = Manifest.from_bytes(raw, mediatypes.OCI_INDEX)
    assert m.media_type == DM


def test_content_type_used_when_body_has_none() -> None:
    raw = b'{"schemaVersion":2}'
    m = Manifest.from_bytes(raw, "Application/VND.docker.distribution.manifest.list.v2+json; x=y")
    assert m.media_type == mediatypes.DOCKER_LIST
    assert m.is_index


def test_docker_list_round_trip_through_from_bytes() -> None:
    built = encode_list(DOCKER_ENTRIES)
    m = Manifest.from_bytes(built.raw)
    assert m == built
    idx = m.index()
    assert [d.digest for d in idx.manifests] == [AMD64, ARM, ARM64, WIN]
    assert idx.manifests[3].platform == PlatformDoc(
        architecture="amd64", os="windows", os_version="10.0.17763.1879", os_features=["win32k"]
    )


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (
            b'{"schemaVersion":1,"name":"a","tag":"1","fsLayers":[],"history":[]}',
            "",
            "unsupported manifest media type ''",
        ),
        (
            b'{"schemaVersion":1,"name":"a","fsLayers":[]}',
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "unsupported manifest media type "
            "'application/vnd.docker.distribution.manifest.v1+prettyjws'",
        ),
        (
            b'{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1'
            b'+json"}',
            "",
            "unsupported manifest media type 'application/vnd.docker.distribution.manifest.v1"
            "+json'",
        ),
        (b'{"schemaVersion":2}', "text/plain", "unsupported manifest media type 'text/plain'"),
    ],
)
def test_unsupported_media_types(raw: bytes, content_type: str, message: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        Manifest.from_bytes(raw, content_type)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "raw", [b"not json", b"", b"[]", b'"x"', b"<html></html>", b'{"schemaVersion":2'],
)
def test_non_json_refused(raw: bytes) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        Manifest.from_bytes(raw, mediatypes.OCI_MANIFEST)
    assert str(info.value).startswith("manifest body is not valid JSON: ")


def test_explicit_unsupported_body_media_type_not_overridden() -> None:
    raw = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json",'
        b'"config":{"digest":"sha256:' + b"a" * 64 + b'","size":2}}'
    )
    with pytest.raises(UnsupportedMediaTypeError):
        Manifest.from_bytes(raw)
