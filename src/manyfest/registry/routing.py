"""RoutingClient: one client for registries and OCI image layouts, chosen per reference.

The engine and every operation talk to one client (``engine.client``) with
:class:`~manyfest.registry.RegistryClient`'s methods. :class:`RoutingClient` is that client:
a call whose reference names a layout (``oci:PATH[:TAG]``,
:attr:`manyfest.reference.Reference.layout`) goes to its
:class:`~manyfest.registry.layout.LayoutClient`, any other to the registry API. Calls with
two references (``mount_blob``, ``copy_blob``) pick by both:

* registry to registry: the registry API (mount; streamed GET into an upload);
* layout to registry: the blob file is streamed into a monolithic upload (POST, then PUT
  ``?digest=``), hashed while read; the last chunk goes only once the digest matched;
* registry to layout: the blob's GET is streamed into a temporary file in the layout,
  hashed as written (the transport's :class:`~manyfest.transport.session.BlobStream`
  checks it too), renamed once it matched;
* layout to layout: a hard link (one file system) or a copy, hashed first.

A "mount" between a registry and a layout is never attempted (it is False at once, so the
engine copies); between two layouts it is the link or copy itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from manyfest.content import Manifest
from manyfest.errors import ManyfestError, NotFoundError, RegistryError
from manyfest.models import Descriptor
from manyfest.reference import Reference
from manyfest.registry.client import ManifestHead, RegistryClient
from manyfest.transport import Transport

if TYPE_CHECKING:  # imported on first use: a run without layout references never needs it
    from manyfest.registry.layout import LayoutClient


class RoutingClient(RegistryClient):
    """A :class:`RegistryClient` that answers layout references from the file system.

    Args:
        transport: the run's transport (registry references).
        layouts: the layout client (default: a new one).
    """

    def __init__(self, transport: Transport, layouts: LayoutClient | None = None) -> None:
        super().__init__(transport)
        self._layouts = layouts

    @property
    def layouts(self) -> LayoutClient:
        """The layout client (made on first use)."""
        if self._layouts is None:
            from manyfest.registry.layout import LayoutClient

            self._layouts = LayoutClient()
        return self._layouts

    async def head_manifest(self, ref: Reference, *, push: bool = False) -> ManifestHead | None:
        """:meth:`RegistryClient.head_manifest`, or the layout's index.json entry."""
        if ref.layout:
            return await self.layouts.head_manifest(ref, push=push)
        return await super().head_manifest(ref, push=push)

    async def get_manifest(self, ref: Reference) -> Manifest:
        """:meth:`RegistryClient.get_manifest`, or the layout's blob (verified)."""
        if ref.layout:
            return await self.layouts.get_manifest(ref)
        return await super().get_manifest(ref)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *, built: bool = False) -> str:
        """:meth:`RegistryClient.put_manifest`, or a blob + index.json entry in the layout."""
        if ref.layout:
            return await self.layouts.put_manifest(ref, manifest, built=built)
        return await super().put_manifest(ref, manifest, built=built)

    async def delete_manifest(self, ref: Reference) -> bool:
        """:meth:`RegistryClient.delete_manifest`, or the layout's index.json entries."""
        if ref.layout:
            return await self.layouts.delete_manifest(ref)
        return await super().delete_manifest(ref)

    async def list_tags(self, ref: Reference, *, page_size: int | None = None) -> list[str]:
        """:meth:`RegistryClient.list_tags`, or every ``ref.name`` of the layout's index.json
        (``page_size`` has no meaning there)."""
        if ref.layout:
            return await self.layouts.list_tags(ref)
        return await super().list_tags(ref, page_size=page_size)

    async def get_referrers(
        self, ref: Reference, digest: str, artifact_type: str = ""
    ) -> list[Descriptor] | None:
        """:meth:`RegistryClient.get_referrers`; ``None`` for a layout (a layout has no
        referrers API: its referrers are found by the fallback tag, as in a registry
        without the API)."""
        if ref.layout:
            return None
        return await super().get_referrers(ref, digest, artifact_type)

    async def get_manifest_etag(self, ref: Reference) -> tuple[Manifest | None, str]:
        """:meth:`RegistryClient.get_manifest_etag`; in a layout the manifest with no ETag
        (``(None, "")`` when the tag is absent)."""
        if not ref.layout:
            return await super().get_manifest_etag(ref)
        try:
            return await self.layouts.get_manifest(ref), ""
        except NotFoundError:
            return None, ""

    async def put_manifest_if_match(self, ref: Reference, manifest: Manifest,
                                    etag: str) -> RegistryError | None:
        """:meth:`RegistryClient.put_manifest_if_match`; in a layout a plain PUT (index.json
        is rewritten under the layout's lock)."""
        if not ref.layout:
            return await super().put_manifest_if_match(ref, manifest, etag)
        await self.layouts.put_manifest(ref, manifest)
        return None

    async def get_blob(self, ref: Reference, digest: str) -> bytes:
        """:meth:`RegistryClient.get_blob`, or the layout's blob file (verified)."""
        if ref.layout:
            return await self.layouts.get_blob(ref, digest)
        return await super().get_blob(ref, digest)

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        """:meth:`RegistryClient.blob_exists`, or whether the layout has the blob file."""
        if ref.layout:
            return await self.layouts.blob_exists(ref, digest)
        return await super().blob_exists(ref, digest)

    async def upload_blob(self, target: Reference, data: bytes, digest: str | None = None) -> str:
        """:meth:`RegistryClient.upload_blob`, or a blob file written into the layout."""
        if target.layout:
            return await self.layouts.upload_blob(target, data, digest)
        return await super().upload_blob(target, data, digest)

    async def mount_blob(self, target: Reference, digest: str, source: Reference) -> bool:
        """A mount within a registry; between layouts, the blob linked or copied; between
        a registry and a layout, False at once (the caller copies)."""
        if target.layout and source.layout:
            return await self.layouts.mount_blob(target, digest, source)
        if target.layout or source.layout:
            return False
        return await super().mount_blob(target, digest, source)

    async def copy_blob(
        self, source: Reference, target: Reference, digest: str, size: int | None = None, *,
        data: bytes | None = None,
    ) -> int:
        """Stream a blob from ``source`` into ``target``, either a registry or a layout
        (see the module docstring); digest checked while streaming; returns its size.
        ``data`` (the blob's verified bytes, held by the caller) is uploaded from memory
        between registries (:meth:`RegistryClient.copy_blob`); a layout reads its file.

        Raises:
            NotFoundError: the source lacks the blob.
            DigestMismatchError: the source's bytes do not match ``digest``.
            RegistryError: a registry refused the download or the upload.
            LayoutError: a layout cannot be written.
        """
        if source.layout and target.layout:
            return await self.layouts.copy_blob(source, target, digest, size)
        if target.layout:
            return await self._download(source, target, digest)
        if source.layout:
            return await self._upload(source, target, digest)
        return await super().copy_blob(source, target, digest, size, data=data)

    async def copy_blob_unless_present(
        self, source: Reference, target: Reference, digest: str, size: int | None = None, *,
        data: bytes | None = None,
    ) -> int | None:
        """:meth:`RegistryClient.copy_blob_unless_present` between registries; with a
        layout on either side, a look-up of the blob in ``target`` (``None`` when there),
        then :meth:`copy_blob`."""
        if not (source.layout or target.layout):
            return await super().copy_blob_unless_present(source, target, digest, size,
                                                           data=data)
        if await self.blob_exists(target, digest):
            return None
        return await self.copy_blob(source, target, digest, size, data=data)

    async def _download(self, source: Reference, target: Reference, digest: str) -> int:
        """Registry → layout: the GET streamed into the layout's temporary file."""
        what = f"copy blob {source.name}@{digest} to {target.name}"

        async def attempt() -> int:
            async with self.transport.stream(
                source.registry,
                f"/v2/{source.repository}/blobs/{digest}",
                digest,
                what=f"get blob {source.name}@{digest}",
                scopes=self._scopes(source, ("pull",)),
            ) as body:
                # A broken connection surfaces from the stream as retryable (the whole copy
                # is retried, the temporary file removed); other bytes as DigestMismatchError.
                return await self.layouts.write_blob(target, digest, body)

        if await self.layouts.blob_exists(target, digest):
            return await self.layouts.blob_size(target, digest)
        return await self.transport.retrying(attempt, what=what)

    async def _upload(self, source: Reference, target: Reference, digest: str) -> int:
        """Layout → registry: the blob file streamed into a monolithic upload."""
        size = await self.layouts.blob_size(source, digest)
        what = f"copy blob {source.name}@{digest} to {target.name}"

        async def attempt() -> int:
            location = await self._start_upload(target, digest)
            sep = "&" if "?" in location else "?"
            failure: list[ManyfestError] = []

            async def body() -> AsyncIterator[bytes]:
                try:
                    async for chunk in self.layouts.read_blob(source, digest):
                        yield chunk
                except ManyfestError as exc:
                    failure.append(exc)
                    raise

            try:
                await self.transport.request(
                    "PUT",
                    target.registry,
                    f"{location}{sep}digest={digest}",
                    what=f"upload {digest} to {target.name}",
                    scopes=self._scopes(target, ("pull", "push")),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Length": str(size)},
                    data=body(),
                    ok=(201, 204),
                )
            except Exception:
                # The file's own failure (other bytes than its digest, gone) is not the
                # registry's: raise it, not what the cut-off upload became.
                if failure:
                    raise failure[0] from None
                raise
            if failure:
                raise failure[0]
            return size

        return await self.transport.retrying(attempt, what=what)
