"""Unit tests for manyfest.store: an entry keeps its source index's exact descriptor only
while that descriptor still says what the entry says."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from manyfest import mediatypes, reference
from manyfest.content import Manifest
from manyfest.platform import Platform
from manyfest.store import ManifestStore, StoredImage, descriptor_agrees

_IMAGE = json.dumps({
    "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
    "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": "sha256:" + "c" * 64, "size": 7},
    "layers": [],
}).encode()


def _entry() -> tuple[StoredImage, bytes]:
    manifest = Manifest.from_bytes(_IMAGE)
    descriptor = json.dumps({
        "mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.size,
        "annotations": {"a": "1"}, "platform": {"architecture": "arm64", "os": "linux"},
    }, separators=(",", ":")).encode()  # the store file is compact: so is what it keeps
    ref = reference.parse(f"127.0.0.1:5000/app:1@{manifest.digest}")
    image = StoredImage(ref, manifest, Platform("linux", "arm64"), (("a", "1"),),
                        descriptor=descriptor)
    return image, descriptor


def test_exact_descriptor_round_trips(tmp_path: Path) -> None:
    image, descriptor = _entry()
    store = ManifestStore(tmp_path)
    target = reference.parse("127.0.0.1:5000/app:list")
    with store.locked(target):
        store.save(target, [image])
    [read] = store.get_list(target)
    assert read.descriptor == descriptor
    assert read.exact_descriptor() == descriptor


def test_a_changed_entry_drops_its_descriptor(tmp_path: Path) -> None:
    image, descriptor = _entry()
    assert descriptor_agrees(descriptor, image)
    annotated = replace(image, annotations=(("a", "2"),))
    moved = image.with_platform(Platform("linux", "arm64", "v8"))
    for changed in (annotated, moved):
        assert not descriptor_agrees(descriptor, changed)
        assert changed.exact_descriptor() is None
    store = ManifestStore(tmp_path)
    target = reference.parse("127.0.0.1:5000/app:list")
    with store.locked(target):
        store.save(target, [annotated])
    [read] = store.get_list(target)
    assert read.descriptor is None  # not written once it disagrees
    assert b"SourceDescriptor" not in next(store.list_dir(target).iterdir()).read_bytes()
    assert not descriptor_agrees(b"not json", image)
