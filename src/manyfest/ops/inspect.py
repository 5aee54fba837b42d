"""``docker manifest inspect``: print an image manifest or a manifest list as docker does.

Behaviour follows docker/cli ``cli/command/manifest/inspect.go`` (a local list first, else the
remote manifest; tab-indented JSON; ``-v``'s ``ImageManifest`` shape), with one documented
difference: ``inspect`` of a remote list whose information docker's rebuilt list would drop
(annotations, nested indexes, artifact fields) prints the registry's exact bytes.
"""

from __future__ import annotations

from functools import partial

import msgspec

from manyfest import jsonfmt, mediatypes
from manyfest.content import Entry, Manifest, encode_list
from manyfest.engine import Engine, run_all
from manyfest.platform import Platform
from manyfest.reference import Reference
from manyfest.store import ManifestStore, StoredImage


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


async def inspect(
    engine: Engine,
    store: ManifestStore,
    ref: Reference,
    *,
    list_ref: Reference | None = None,
    verbose: bool = False,
) -> str:
    """``docker manifest inspect [-v] [LIST] REF``: the text docker prints.

    Order as docker: with ``list_ref``, the local entry; else a local list named ``ref``;
    else the remote manifest (an image, or a list whose children and configs are fetched).

    Raises:
        NoSuchManifestError: the local list or entry does not exist.
        NotFoundError: the remote manifest does not exist.
    """
    if list_ref is not None:
        return format_image(store.get(list_ref, ref), store, verbose=verbose)
    if store.exists(ref):
        return format_list(store.get_list(ref), store, verbose=verbose)
    manifest = await engine.client.get_manifest(ref)
    if not manifest.is_index:
        if not verbose:
            return jsonfmt.indent(manifest.raw).decode() + "\n"
        platform = None
        if mediatypes.is_image(manifest.media_type):
            platform = (await engine.resolve(ref.with_digest(manifest.digest))).platform
        return format_image(StoredImage(ref, manifest, platform), store, verbose=True)
    index = manifest.index()
    if not verbose and _loses_information(manifest):
        return manifest.raw.decode() + ("" if manifest.raw.endswith(b"\n") else "\n")
    children: dict[int, StoredImage] = {}

    async def fetch(i: int) -> None:
        desc = index.manifests[i]
        # docker names a remote list's children name:tag@digest (tag kept).
        child_ref = Reference(ref.registry, ref.repository, ref.tag, desc.digest)
        child = await engine.client.get_manifest(child_ref)
        p = desc.platform
        platform = (
            Platform(p.os, p.architecture, p.variant, p.os_version, tuple(p.os_features))
            if p is not None
            else None
        )
        children[i] = StoredImage(
            child_ref, child, platform, tuple(sorted(desc.annotations.items()))
        )

    await run_all(*(partial(fetch, i) for i in range(len(index.manifests))))
    images = [children[i] for i in range(len(index.manifests))]
    return format_list(images, store, verbose=verbose)


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
