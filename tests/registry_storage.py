"""Write built images straight into a Distribution 2.8 filesystem storage, no HTTP.

Pushing tens of thousands of images through a registry takes most of an hour on a small
machine (two requests per blob, one per manifest, each through the registry's upload
sessions); building the same images and writing the files the registry would have written
takes under 4 minutes for 40,000 real-shape images on 2 cores, most of it building them
(~4 ms of CPU per image; the files themselves, ~12 per image, about a tenth). This module
writes what ``docker-registry`` (CNCF Distribution v2.8, ``storage.filesystem``) leaves under
its ``rootdirectory`` after :func:`tests.imagewriter.push_built` pushed the same images by
tag, file for file and byte for byte (``tests/test_registry_storage.py`` compares the two
trees):

* every blob (each layer, config and manifest), once per storage:
  ``docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data``;
* per repository ``<name>``, under ``docker/registry/v2/repositories/<name>/``:

  - ``_layers/sha256/<hex>/link`` for each layer and the config (content ``sha256:<hex>``,
    no newline: the registry serves a blob of a repository only through such a link);
  - ``_manifests/revisions/sha256/<hex>/link`` for each manifest;
  - ``_manifests/tags/<tag>/current/link`` (the tag's manifest) and
    ``_manifests/tags/<tag>/index/sha256/<hex>/link`` (every manifest the tag has named);
  - ``_uploads/``, empty (what the upload sessions of a push leave behind).

Files are written with the registry's modes (``0666`` and directories ``0777``, less the
umask). The registry keeps no other state (no database, no cache unless configured), so it
serves the images as pushed once started on the storage. Write only while no registry runs
on it: a running one does not expect files to appear under it, and nothing here is atomic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.imagewriter import Image

V2 = Path("docker", "registry", "v2")
"""Where Distribution's filesystem driver keeps everything, under its ``rootdirectory``."""
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def _hex(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, _FILE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _mkdirs(path: str) -> None:
    os.makedirs(path, 0o777, exist_ok=True)


@dataclass
class StorageWriter:
    """Writes images by tag into the filesystem storage rooted at ``root`` (the registry's
    ``storage.filesystem.rootdirectory``; for :class:`tests.registry_server.RegistryServer`,
    its :attr:`~tests.registry_server.RegistryServer.storage_dir`).

    Each blob is written once per writer and each link once per repository; a storage that
    already holds some of them (from a push or an earlier writer) is fine, as every path is
    named by its content (a tag's ``current/link`` is rewritten, as a push by tag does).

    Attributes:
        root: the storage's root directory (created when missing).
        blobs_written: blob files this writer wrote.
        links_written: link files this writer wrote.
    """

    root: Path
    blobs_written: int = 0
    links_written: int = 0
    _blobs: set[str] = field(default_factory=set, repr=False)
    _links: set[str] = field(default_factory=set, repr=False)
    _dirs: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._v2 = str(self.root / V2)

    def _blob(self, hexpart: str, data: bytes) -> None:
        if hexpart in self._blobs:
            return
        prefix = f"{self._v2}/blobs/sha256/{hexpart[:2]}"
        if prefix not in self._dirs:
            _mkdirs(prefix)
            self._dirs.add(prefix)
        directory = f"{prefix}/{hexpart}"
        os.makedirs(directory, 0o777, exist_ok=True)
        _write(f"{directory}/data", data)
        self._blobs.add(hexpart)
        self.blobs_written += 1

    def _link(self, directory: str, hexpart: str) -> None:
        """``<directory>/<hex>/link`` containing ``sha256:<hex>``, once."""
        path = f"{directory}/{hexpart}"
        if path in self._links:
            return
        os.makedirs(path, 0o777, exist_ok=True)
        _write(f"{path}/link", b"sha256:" + hexpart.encode())
        self._links.add(path)
        self.links_written += 1

    def _repository(self, name: str) -> str:
        base = f"{self._v2}/repositories/{name}"
        if base not in self._dirs:
            for sub in ("_layers/sha256", "_manifests/revisions/sha256", "_manifests/tags",
                        "_uploads"):
                _mkdirs(f"{base}/{sub}")
            self._dirs.add(base)
        return base

    def write(self, name: str, image: Image) -> str:
        """Store ``image`` as pushed to ``name`` (``repository:tag``, no registry host): its
        blobs (streamed layers generated chunk by chunk), their links in the repository,
        the manifest and its revision and tag links.

        Returns the manifest digest (``sha256:<hex>``), the registry's
        ``Docker-Content-Digest`` for it.

        Raises:
            ValueError: ``name`` has no tag, or names it by digest.
            OSError: the storage cannot be written.
        """
        repository, sep, tag = name.rpartition(":")
        if not sep or not repository or "/" in tag or "@" in name:
            raise ValueError(f"not repository:tag: {name!r}")
        base = self._repository(repository)
        layers = f"{base}/_layers/sha256"
        for digest, data in image.blobs:
            hexpart = _hex(digest)
            self._blob(hexpart, data)
            self._link(layers, hexpart)
        for layer in image.streamed:
            hexpart = _hex(layer.digest)
            if hexpart not in self._blobs:
                directory = f"{self._v2}/blobs/sha256/{hexpart[:2]}/{hexpart}"
                _mkdirs(directory)
                with open(f"{directory}/data", "wb") as fh:
                    for chunk in layer.chunks():
                        fh.write(chunk)
                self._blobs.add(hexpart)
                self.blobs_written += 1
            self._link(layers, hexpart)
        manifest = image.manifest
        hexpart = _hex(manifest.digest)
        self._blob(hexpart, manifest.raw)
        self._link(f"{base}/_manifests/revisions/sha256", hexpart)
        tag_dir = f"{base}/_manifests/tags/{tag}"
        self._link(f"{tag_dir}/index/sha256", hexpart)
        _mkdirs(f"{tag_dir}/current")
        _write(f"{tag_dir}/current/link", b"sha256:" + hexpart.encode())
        return manifest.digest


def write_built(root: Path, images: Mapping[str, Image]) -> dict[str, str]:
    """Write built images into the storage at ``root``, as :func:`tests.imagewriter.push_built`
    pushes them (by tag, each blob once per repository), without a registry.

    Args:
        root: the registry's storage root directory; no registry may run on it.
        images: ``{repository:tag: Image}``.

    Returns:
        ``{repository:tag: manifest digest}``, what :func:`push_built` returns for them.

    Raises:
        ValueError: a name is not ``repository:tag``.
        OSError: the storage cannot be written.
    """
    writer = StorageWriter(root)
    return {name: writer.write(name, image) for name, image in images.items()}
