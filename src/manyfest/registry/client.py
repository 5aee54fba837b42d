"""RegistryClient: the OCI distribution API calls manyfest makes.

Endpoints follow the OCI distribution-spec (``spec.md``): manifests HEAD/GET/PUT (end-3,
end-7), blob HEAD/GET (end-2), cross-repository mount (end-11), monolithic upload POST + PUT
(end-4a/end-6), chunked upload POST + PATCH + PUT (end-4a/end-5/end-6) where a registry
wants it (:data:`UPLOAD_CHUNK`). Every manifest request sends an ``Accept`` naming the
Docker and OCI manifest and list/index types; every PUT sends ``Content-Type`` equal to the
body's media type. Reads ask for ``pull`` only; writes ``pull,push``; a mount also asks
``pull`` on the source repository.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urljoin, urlsplit

import msgspec

from manyfest import digest as digests
from manyfest import mediatypes
from manyfest.auth.tokens import scope
from manyfest.content import Manifest
from manyfest.errors import (
    AuthenticationError,
    AuthorizationError,
    DigestMismatchError,
    InvalidReferenceError,
    ManifestRejectedError,
    NotFoundError,
    RegistryError,
    UnsupportedMediaTypeError,
)
from manyfest.models import Descriptor, IndexDoc
from manyfest.reference import Reference
from manyfest.transport import MANIFEST_LIMIT, Response, Transport
from manyfest.transport.errormap import error_details, registry_error

if TYPE_CHECKING:
    from manyfest.transport.session import BlobStream

_PULL = ("pull",)

MISSING_BLOB_HINT = ("the source is incomplete: its manifest names this blob, which its "
                     "repository does not hold (lost or garbage-collected); push the image "
                     "to the source again")
"""The advice for a blob a source's manifest names and its registry answers 404 for."""
_PUSH = ("pull", "push")
_PROBE_REFUSED = (400, 404, 405)
"""Answers of a registry that will not take ``?mount=&from=`` on an upload's ``POST``."""

UPLOAD_CHUNK = 8 << 20
"""Bytes per ``PATCH`` of a chunked upload (distribution-spec "Pushing a blob in chunks").

A blob is streamed from its source and sent in chunks of this size to a registry that wants
chunked uploads: one that announces ``OCI-Chunk-Min-Length`` on the upload's ``POST``
answer (then the chunk is at least that long), or one that refused a monolithic ``PUT`` as
too large (``413``). One chunk is held in memory per blob being copied (twice, briefly,
while it is sent), whatever the blob's size. A ``413`` on a ``PATCH`` halves the chunk for
that registry (down to :data:`MIN_CHUNK`)."""

MIN_CHUNK = 256 << 10
"""The smallest chunk sent after ``413`` answers (bytes)."""

MAX_CHUNK = 64 << 20
"""The largest ``OCI-Chunk-Min-Length`` honoured (bytes): a registry asking for more gets
monolithic uploads (allowed by the spec whatever the minimum), so memory stays bounded."""


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a manifest HEAD tells: digest, size and media type (no body)."""

    digest: str
    size: int
    media_type: str


class RegistryClient:
    """Registry API calls over a shared :class:`~manyfest.transport.Transport`.

    Args:
        transport: the run's transport (one session, limits, auth).
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._no_head: set[str] = set()
        self._no_probe: set[str] = set()
        """Registries that refused an upload ``POST`` carrying a mount from the target
        repository itself (400, 404, 405: not the spec's 202): a blob HEAD asks there."""
        self._chunks: dict[str, int] = {}
        """Registries that refused a monolithic upload as too large (413): the chunk size
        to send them (:data:`UPLOAD_CHUNK`, halved by each 413 on a ``PATCH``)."""

    @staticmethod
    def _scopes(ref: Reference, actions: tuple[str, ...]) -> frozenset[str]:
        """The token scope of a request on ``ref``'s repository. Every repository request
        of the client asks for one first, so this is where a reference with no repository
        (an OCI layout's, or one built from it) is stopped before any request.

        Raises:
            InvalidReferenceError: ``ref`` names no repository (``/v2//...``).
        """
        if not ref.repository:
            raise InvalidReferenceError(
                str(ref), "names no repository: "
                + ("an OCI layout is not a registry" if ref.layout else
                   "a registry request needs registry/repository"))
        return frozenset({scope(ref.repository, actions)})

    async def _manifest_request(
        self,
        method: str,
        ref: Reference,
        what: str,
        scopes: frozenset[str],
        ok: tuple[int, ...],
    ) -> Response:
        """HEAD/GET ``/v2/<repository>/manifests/<tag or digest>`` with the full Accept."""
        return await self.transport.request(
            method,
            ref.registry,
            f"/v2/{ref.repository}/manifests/{ref.reference}",
            what=what,
            scopes=scopes,
            headers={"Accept": mediatypes.ACCEPT},
            ok=ok,
            limit=MANIFEST_LIMIT,
        )

    async def head_manifest(self, ref: Reference, *, push: bool = False) -> ManifestHead | None:
        """HEAD a manifest by tag or digest; ``None`` when it does not exist (404).

        Registries that refuse HEAD (405) or answer without ``Docker-Content-Digest`` get a
        GET instead, and the digest is computed from the body (remembered per registry, so
        later lookups go straight to GET).

        Args:
            ref: the manifest's reference.
            push: ask for a ``pull,push`` token (the target of a publish), so the same token
                serves the writes that follow.

        Raises:
            RegistryError: any answer other than 200 or 404.
        """
        scopes = self._scopes(ref, _PUSH if push else _PULL)
        if ref.registry not in self._no_head:
            resp = await self._manifest_request(
                "HEAD", ref, f"look up {ref}", scopes, (200, 404, 405)
            )
            if resp.status == 404:
                return None
            dgst = resp.headers.get("Docker-Content-Digest", "") or (ref.digest or "")
            if resp.status == 200 and dgst:
                return ManifestHead(
                    dgst,
                    int(resp.headers.get("Content-Length", "0") or 0),
                    mediatypes.base(resp.headers.get("Content-Type", "")),
                )
            self._no_head.add(ref.registry)
        resp = await self._manifest_request("GET", ref, f"look up {ref}", scopes, (200, 404))
        if resp.status == 404:
            return None
        manifest = _decode(ref, resp)
        return ManifestHead(manifest.digest, manifest.size, manifest.media_type)

    async def get_manifest(self, ref: Reference) -> Manifest:
        """GET a manifest's exact bytes.

        The digest is computed from the bytes and checked against the reference's digest (when
        it names one) or the ``Docker-Content-Digest`` header (when sent).

        Raises:
            NotFoundError: no such manifest (docker's phrase is kept in the message).
            DigestMismatchError: the bytes do not match the digest that named them.
        """
        try:
            resp = await self._manifest_request(
                "GET", ref, f"get manifest {ref}", self._scopes(ref, _PULL), (200,)
            )
        except NotFoundError as exc:
            raise NotFoundError(
                f"manifest for {ref} not found",
                status=exc.status,
                method=exc.method,
                url=exc.url,
                errors=exc.errors,
                hint="push the image first, or check its name and tag",
            ) from exc
        manifest = _decode(ref, resp)
        if ref.digest:
            digests.verify(resp.body, ref.digest, f"manifest {ref}")
        else:
            served = resp.headers.get("Docker-Content-Digest", "")
            if served.startswith("sha256:") and served != manifest.digest:
                raise DigestMismatchError(
                    f"manifest {ref}: body has digest {manifest.digest}, "
                    f"registry said {served}"
                )
        return manifest

    async def put_manifest(self, ref: Reference, manifest: Manifest, *, built: bool = False) -> str:
        """PUT ``manifest.raw`` unchanged at ``ref`` (tag or digest).

        ``Content-Type`` is the manifest's media type. Returns the digest; when the registry
        sends ``Docker-Content-Digest`` it must equal the digest of the bytes sent.

        Args:
            ref: where to put it.
            manifest: the exact bytes and media type.
            built: the manifest is a list manyfest built (its media type can be chosen: the
                advice for a refused media type says how).

        Raises:
            ManifestRejectedError: the registry refused it (a child or blob missing, a media
                type it does not accept: 400 MANIFEST_INVALID/UNSUPPORTED, 415).
            DigestMismatchError: the registry reports another digest than the bytes have.
        """
        kind = "list" if manifest.is_index else "manifest"
        what = f"push {kind} {ref} ({manifest.media_type})"
        try:
            resp = await self.transport.request(
                "PUT",
                ref.registry,
                f"/v2/{ref.repository}/manifests/{ref.reference}",
                what=what,
                scopes=self._scopes(ref, _PUSH),
                headers={"Content-Type": manifest.media_type},
                data=manifest.raw,
                ok=(200, 201, 202),
            )
        except ManifestRejectedError as exc:
            if _refuses_media_type(exc):
                exc.hint = _media_type_advice(manifest, built=built)
            raise
        served = resp.headers.get("Docker-Content-Digest", "")
        if served.startswith("sha256:") and served != manifest.digest:
            raise DigestMismatchError(
                f"push manifest {ref}: registry stored digest {served}, sent {manifest.digest}"
            )
        return manifest.digest

    async def delete_manifest(self, ref: Reference) -> bool:
        """DELETE ``/v2/<repository>/manifests/<tag or digest>`` (distribution-spec end-9).

        Asks for a ``pull,push,delete`` token (Distribution maps DELETE to the ``delete``
        action). Returns True when deleted (202), False when there was nothing (404).

        Raises:
            RegistryError: any other answer. A registry that does not delete tags answers
                400 or 405 (the spec allows both); Distribution 2.8 answers a tag with
                ``400 DIGEST_INVALID`` (it deletes by digest only) and any DELETE with
                ``405 UNSUPPORTED`` when deletion is not enabled.
        """
        resp = await self.transport.request(
            "DELETE",
            ref.registry,
            f"/v2/{ref.repository}/manifests/{ref.reference}",
            what=f"delete {ref}",
            scopes=frozenset({scope(ref.repository, ("pull", "push", "delete"))}),
            ok=(200, 202, 404),
        )
        return resp.status != 404

    async def get_blob(self, ref: Reference, digest: str) -> bytes:
        """GET a blob (a config) and verify it against ``digest``.

        Raises:
            NotFoundError: the blob is not in the repository.
            DigestMismatchError: the bytes do not match ``digest``.
        """
        try:
            resp = await self.transport.request(
                "GET",
                ref.registry,
                f"/v2/{ref.repository}/blobs/{digest}",
                what=f"get blob {ref.name}@{digest}",
                scopes=self._scopes(ref, _PULL),
            )
        except NotFoundError as exc:
            exc.hint = MISSING_BLOB_HINT
            raise
        digests.verify(resp.body, digest, f"blob {ref.name}@{digest}")
        return resp.body

    async def copy_blob(
        self, source: Reference, target: Reference, digest: str, size: int | None = None, *,
        data: bytes | None = None,
    ) -> int:
        """Stream a blob from ``source``'s repository into ``target``'s; returns its size.

        The body goes from the source's GET straight into the target's upload (``POST`` then
        ``PUT ?digest=``), never held whole; its digest is computed while streaming and the
        upload fails rather than complete with other bytes. A failure anywhere retries the
        whole copy (a new upload session), within the transport's deadlines.

        Args:
            source: a reference in the repository holding the blob.
            target: a reference in the repository to copy it into.
            digest: the blob's digest.
            size: its size in bytes from the descriptor (sent as Content-Length).
            data: the blob's bytes, already read from the source and verified against
                ``digest`` (a config the caller holds): uploaded in one ``PUT`` instead of
                read again, unless the target wants chunks smaller than ``data``.

        Raises:
            NotFoundError: the blob is not in the source repository.
            DigestMismatchError: the source served other bytes than the digest names.
            RegistryError: the target refused the upload.
        """
        copied = await self._copy(source, target, digest, size, data, probe=False)
        assert copied is not None  # without the probe an upload always runs
        return copied

    async def copy_blob_unless_present(
        self, source: Reference, target: Reference, digest: str, size: int | None = None, *,
        data: bytes | None = None,
    ) -> int | None:
        """:meth:`copy_blob`, the upload's ``POST`` asking first whether ``target``'s
        repository has the blob: ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<name>``
        (a mount from the target repository itself; distribution-spec "Mounting a blob from
        another repository": ``201 Created`` when the registry mounted it, else ``202
        Accepted`` and an upload session, which the copy then uses). One request where a
        blob ``HEAD`` and a ``POST`` would be two. A registry that does not mount answers
        ``202`` whatever it holds: the blob is uploaded again (correct, only wasted bytes).

        A registry that refuses that ``POST`` (400, 404 or 405, where the spec says 202) is
        asked with a blob ``HEAD`` instead, then a plain ``POST``, from then on in the run.

        Returns:
            The blob's size when it was copied; ``None`` when the repository had it (``201``:
            nothing read from the source, nothing sent).

        Raises:
            as :meth:`copy_blob`.
        """
        if target.registry in self._no_probe:
            if await self.blob_exists(target, digest):
                return None
            return await self.copy_blob(source, target, digest, size, data=data)
        return await self._copy(source, target, digest, size, data, probe=True)

    async def _copy(self, source: Reference, target: Reference, digest: str,
                    size: int | None, data: bytes | None, *, probe: bool) -> int | None:
        what = f"copy blob {source.name}@{digest} to {target.name}"

        async def attempt() -> int | None:
            try:
                opened = await self._open_upload(target, digest, probe=probe)
            except RegistryError as exc:
                if (not probe or exc.status not in _PROBE_REFUSED
                        or isinstance(exc, AuthenticationError | AuthorizationError)):
                    raise
                self._no_probe.add(target.registry)  # the mount parameters, refused
                if await self.blob_exists(target, digest):
                    return None
                opened = await self._open_upload(target, digest)
            if opened is None:
                return None
            location, min_chunk = opened
            chunk = self._chunk_for(target.registry, min_chunk)
            if data is not None and not (chunk and len(data) > chunk):
                await self._put_upload(target, location, digest, data)
                return len(data)
            async with self.transport.stream(
                source.registry,
                f"/v2/{source.repository}/blobs/{digest}",
                digest,
                what=f"get blob {source.name}@{digest}",
                scopes=self._scopes(source, _PULL),
            ) as body:
                if chunk and (size is None or size > chunk):
                    return await self._upload_chunked(target, location, body, digest, chunk)
                try:
                    await self._put_upload(target, location, digest, body, size=size)
                except Exception:
                    # Bytes that do not match the digest are the source's fault (no retry);
                    # a broken connection on either side retries the whole copy.
                    if isinstance(body.failure, DigestMismatchError):
                        raise body.failure from None
                    raise
                if body.failure is not None:
                    raise body.failure
                return body.size

        while True:
            learned = self._chunks.get(target.registry, 0)
            try:
                return await self.transport.retrying(attempt, what=what)
            except NotFoundError as exc:
                if exc.method == "GET":  # the source's GET: the blob is not there
                    exc.hint = MISSING_BLOB_HINT
                raise
            except RegistryError as exc:
                if exc.status != 413 or not self._smaller_chunks(target.registry, learned):
                    raise
                # Too large for the registry: copy again, in (smaller) chunks.

    def _smaller_chunks(self, registry: str, chunk: int) -> bool:
        """After a 413 with ``chunk`` (0: a monolithic upload): chunks from now on, or
        smaller ones; False when they cannot get smaller."""
        if not chunk:
            self._chunks[registry] = UPLOAD_CHUNK
            return True
        if chunk <= MIN_CHUNK:
            return False
        self._chunks[registry] = max(MIN_CHUNK, chunk // 2)
        return True

    def _chunk_for(self, registry: str, min_chunk: int) -> int:
        """The chunk size for an upload to ``registry`` (0: monolithic): what a 413 taught,
        else :data:`UPLOAD_CHUNK` (at least ``min_chunk``) when the registry announced
        ``OCI-Chunk-Min-Length``."""
        learned = self._chunks.get(registry, 0)
        if learned:
            return max(learned, min_chunk) if min_chunk <= MAX_CHUNK else learned
        if 0 < min_chunk <= MAX_CHUNK:
            return max(UPLOAD_CHUNK, min_chunk)
        return 0

    async def _upload_chunked(self, target: Reference, location: str, body: BlobStream,
                              digest: str, chunk: int) -> int:
        """Send ``body`` in ``PATCH`` es of ``chunk`` bytes, then ``PUT ?digest=`` (empty).

        Each ``PATCH`` carries ``Content-Range: <first>-<last>`` (inclusive byte offsets) and
        goes to the ``Location`` of the answer before it; the registry's ``Range`` answer
        must acknowledge every byte sent. A ``416`` (a chunk out of order) resumes from the
        registry's ``Range`` within the chunk held. The last bytes only come out of ``body``
        once their digest is checked, so wrong bytes never complete the upload. On any
        failure the upload session is cancelled (DELETE), best effort.
        """
        offset = 0
        pieces: list[bytes] = []
        held = 0
        try:
            async for piece in body:
                pieces.append(piece)
                held += len(piece)
                while held >= chunk:
                    data = b"".join(pieces)
                    pieces, held = ([data[chunk:]], held - chunk) if held > chunk else ([], 0)
                    location = await self._patch(target, location, data[:chunk], offset,
                                                 digest)
                    offset += chunk
            if body.failure is not None:
                raise body.failure
            if held:
                location = await self._patch(target, location, b"".join(pieces), offset,
                                             digest)
                offset += held
            await self._put_upload(target, location, digest, b"", size=0,
                                   what="complete upload of")
        except BaseException:
            with contextlib.suppress(Exception):
                await self.transport.request(
                    "DELETE", target.registry, location,
                    what=f"cancel upload to {target.name}",
                    scopes=self._scopes(target, _PUSH), ok=(200, 202, 204, 404),
                )
            if isinstance(body.failure, DigestMismatchError):
                raise body.failure from None
            raise
        return offset

    async def _patch(self, target: Reference, location: str, data: bytes, offset: int,
                     digest: str) -> str:
        """``PATCH`` ``data`` (bytes ``offset`` on) into the upload at ``location``; returns
        the upload's next ``Location``.

        A ``416`` (the spec's answer to a chunk out of order, with the registry's
        ``Range``) sends the rest of ``data`` from the registry's offset, when that falls
        within ``data`` (at most three times).

        Raises:
            RegistryError: the registry refused the chunk, lost bytes of an earlier one, or
                acknowledged other bytes than were sent.
        """
        for _ in range(3):
            end = offset + len(data) - 1
            resp = await self.transport.request(
                "PATCH",
                target.registry,
                location,
                what=f"upload bytes {offset}-{end} of {digest} to {target.name}",
                scopes=self._scopes(target, _PUSH),
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{offset}-{end}",
                         "Content-Length": str(len(data))},
                data=data,
                ok=(202, 416),
            )
            location = resp.headers.get("Location") or location
            acked = range_end(resp.headers.get("Range", ""))
            if resp.status == 202:
                if acked is not None and acked != end:
                    raise RegistryError(
                        f"upload bytes {offset}-{end} of {digest} to {target.name}: the "
                        f"registry acknowledged bytes 0-{acked}",
                        status=resp.status, method="PATCH", url=resp.url,
                        hint="the registry dropped part of the upload; retry, and if it "
                        "persists report it to the registry's operator",
                    )
                return location
            if acked is None or acked < offset - 1:
                raise RegistryError(
                    f"upload bytes {offset}-{end} of {digest} to {target.name}: registry "
                    f"answered 416 holding bytes 0-{acked if acked is not None else '?'}",
                    status=416, method="PATCH", url=resp.url,
                    hint="the registry lost part of the upload; retry",
                )
            if acked >= end:
                return location  # it had the chunk already
            data = data[acked + 1 - offset:]
            offset = acked + 1
        raise RegistryError(
            f"upload bytes {offset}-{offset + len(data) - 1} of {digest} to {target.name}: "
            "registry kept answering 416",
            status=416, method="PATCH", url=location,
            hint="the registry does not accept chunked uploads as the spec says; report it",
        )

    async def _open_upload(self, target: Reference, digest: str, *,
                           probe: bool = False) -> tuple[str, int] | None:
        """``POST .../blobs/uploads/``: the upload session's ``Location`` and the
        ``OCI-Chunk-Min-Length`` the registry announced (0 when none, or not a number).
        With ``probe`` the ``POST`` asks to mount ``digest`` from the target repository
        itself: ``None`` when the registry answered ``201`` (the repository has it)."""
        resp = await self._start_response(target, digest, probe=probe)
        if resp.status == 201:
            return None
        text = resp.headers.get("OCI-Chunk-Min-Length", "").strip()
        return _location(resp, target, digest), int(text) if text.isdigit() else 0

    async def _start_upload(self, target: Reference, digest: str) -> str:
        """``POST .../blobs/uploads/``: the upload session's ``Location``."""
        return _location(await self._start_response(target, digest), target, digest)

    async def _start_response(self, target: Reference, digest: str, *,
                              probe: bool = False) -> Response:
        """The answer to ``POST .../blobs/uploads/`` (202; with ``probe``, ``?mount=<digest>
        &from=<target repository>``, 201 too)."""
        return await self.transport.request(
            "POST",
            target.registry,
            f"/v2/{target.repository}/blobs/uploads/",
            what=f"start upload of {digest} to {target.name}",
            scopes=self._scopes(target, _PUSH),
            params={"mount": digest, "from": target.repository} if probe else None,
            ok=(201, 202) if probe else (202,),
        )

    async def _put_upload(self, target: Reference, location: str, digest: str,
                          data: bytes | BlobStream, *, size: int | None = None,
                          what: str = "upload") -> None:
        """``PUT <location>?digest=``: completes the upload session at ``location`` with
        ``data``: the whole blob (bytes, or a stream of it from the source, ``size`` bytes
        when known: sent as Content-Length), or ``b""`` after ``PATCH`` chunks (``size=0``,
        ``what="complete upload of"``). ``what`` leads the error line.

        Raises:
            RegistryError: the registry refused it (not 201 or 204).
        """
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        sep = "&" if "?" in location else "?"
        await self.transport.request(
            "PUT",
            target.registry,
            f"{location}{sep}digest={digest}",
            what=f"{what} {digest} to {target.name}",
            scopes=self._scopes(target, _PUSH),
            headers=headers,
            data=data,
            ok=(201, 204),
        )

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        """HEAD a blob in ``ref``'s repository: True when present."""
        resp = await self.transport.request(
            "HEAD",
            ref.registry,
            f"/v2/{ref.repository}/blobs/{digest}",
            what=f"look up blob {ref.name}@{digest}",
            scopes=self._scopes(ref, _PUSH),
            ok=(200, 404),
        )
        return resp.status == 200

    async def mount_blob(self, target: Reference, digest: str, source: Reference) -> bool:
        """Cross-repository mount (``POST .../blobs/uploads/?mount=<digest>&from=<repo>``).

        Returns True on ``201 Created`` (the blob is present in the target repository). On
        ``202 Accepted`` the registry opened an upload session instead; it is cancelled and
        False is returned (the caller copies the bytes).

        Raises:
            RegistryError: any other answer.
        """
        scopes = frozenset(
            {scope(target.repository, _PUSH), scope(source.repository, _PULL)}
        )
        resp = await self.transport.request(
            "POST",
            target.registry,
            f"/v2/{target.repository}/blobs/uploads/",
            what=f"mount {source.name}@{digest} into {target.name}",
            scopes=scopes,
            params={"mount": digest, "from": source.repository},
            ok=(201, 202),
        )
        if resp.status == 201:
            return True
        location = resp.headers.get("Location")
        if location:
            # An abandoned upload session expires on the registry by itself.
            with contextlib.suppress(RegistryError):
                await self.transport.request(
                    "DELETE",
                    target.registry,
                    location,
                    what=f"cancel upload to {target.name}",
                    scopes=scopes,
                    ok=(200, 202, 204, 404),
                )
        return False

    async def repository_exists(self, ref: Reference, *, push: bool = False) -> bool:
        """Whether ``ref``'s repository has tags: False only when ``GET
        /v2/<name>/tags/list?n=1`` is answered 404 ``NAME_UNKNOWN`` (distribution-spec: the
        repository is not known; Distribution answers so for a repository without tags).

        ``push``: ask for a ``pull,push`` token, as the HEADs of a publish's targets do (one
        token serves the writes that follow).

        Raises:
            RegistryError: an answer other than 200 or 404.
            TransportError: the registry could not be reached.
        """
        resp = await self.transport.request(
            "GET", ref.registry, f"/v2/{ref.repository}/tags/list?n=1",
            what=f"list tags of {ref.name}", scopes=self._scopes(ref, _PUSH if push else _PULL),
            ok=(200, 404),
        )
        if resp.status == 200:
            return True
        return "NAME_UNKNOWN" not in {d.code for d in error_details(resp.body, resp.headers)}

    async def list_tags(self, ref: Reference, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``ref``'s repository (distribution-spec "Listing Tags", end-8a/8b).

        ``GET /v2/<name>/tags/list`` (with ``?n=<page_size>`` when given), then, while the
        answer carries a ``Link: <url>; rel="next"`` header, the URL it names (the spec's
        ``?n=<n>&last=<last tag of the previous page>``); no ``Link`` header means the list
        is complete. Tags come in the registry's order (lexical, per the spec), each once.

        Raises:
            NotFoundError: no such repository (404 ``NAME_UNKNOWN``).
            RegistryError: any other error answer, a body that is not a tag list, or a
                registry paging in a loop (:class:`PageTrail`: a page already read, a
                ``last`` asked for again, a page listing no new tag that names another).
        """
        path = f"/v2/{ref.repository}/tags/list"
        if page_size is not None:
            path += f"?n={page_size}"
        what = f"list tags of {ref.name}"
        tags: list[str] = []
        seen: set[str] = set()
        pages = PageTrail(what)
        while True:
            resp = await self.transport.request(
                "GET", ref.registry, path, what=what, scopes=self._scopes(ref, _PULL),
            )
            pages.read(resp.url)
            try:
                page = _TAG_LIST.decode(resp.body)
            except msgspec.DecodeError as exc:
                raise RegistryError(
                    f"{what}: the answer is not a tag list: {exc}",
                    status=resp.status, method="GET", url=resp.url,
                    hint="the registry does not follow the distribution-spec tag listing",
                ) from None
            new = [t for t in page.tags or () if t not in seen]
            seen.update(new)
            tags.extend(new)
            link = resp.headers.get("Link", "")
            following = next_link(link)
            if not following:
                return tags
            path = pages.follow(resp, link, following, added=len(new))

    async def upload_blob(self, target: Reference, data: bytes, digest: str | None = None) -> str:
        """Upload ``data`` monolithically (POST, then PUT ``?digest=``); returns its digest.

        Raises:
            RegistryError: the registry refused the upload.
        """
        dgst = digest or digests.sha256(data)
        location = await self._start_upload(target, dgst)
        await self._put_upload(target, location, dgst, data)
        return dgst

    # ------------------------------------------------------------------ referrers

    async def get_referrers(
        self, ref: Reference, digest: str, artifact_type: str = ""
    ) -> list[Descriptor] | None:
        """The referrers of manifest ``digest`` in ``ref``'s repository, by the OCI 1.1
        referrers API (``GET /v2/<name>/referrers/<digest>[?artifactType=]``,
        distribution-spec "Listing Referrers", end-12a/12b); ``None`` when the registry has
        no referrers API.

        Supported means a 200 whose body is an image index; every page is followed
        (``Link: <...>; rel="next"``). ``artifact_type`` filters: the registry's filter is
        trusted when it says so (``OCI-Filters-Applied: artifactType``), else the
        descriptors are filtered here. A registry without the API answers 404 (the spec's
        signal to fall back to the referrers tag schema); 400, 405 and 406, and a 200 that
        is not an index, count as no API too.

        Raises:
            RegistryError: any other answer (401/403 included).
        """
        params = {"artifactType": artifact_type} if artifact_type else None
        path = f"/v2/{ref.repository}/referrers/{digest}"
        found: list[Descriptor] = []
        first = True
        what = f"list referrers of {ref.name}@{digest}"
        pages = PageTrail(what)
        while path:
            resp = await self.transport.request(
                "GET", ref.registry, path, what=what,
                scopes=self._scopes(ref, _PULL), headers={"Accept": mediatypes.OCI_INDEX},
                params=params if first else None, ok=(200, 400, 404, 405, 406),
            )
            pages.read(resp.url)
            if resp.status != 200:
                return None if first else found
            try:
                page = _INDEX_DOC.decode(resp.body)
            except msgspec.DecodeError:
                return None if first else found  # not an index: no referrers API here
            if first and page.media_type not in ("", mediatypes.OCI_INDEX):
                return None
            applied = resp.headers.get("OCI-Filters-Applied", "")
            filtered = "artifacttype" in applied.lower().replace(" ", "").split(",")
            found.extend(
                d for d in page.manifests
                if not artifact_type or filtered or d.artifact_type == artifact_type
            )
            link = resp.headers.get("Link", "")
            following = next_link(link)
            path = pages.follow(resp, link, following) if following else ""
            first = False
        return found

    async def get_manifest_etag(self, ref: Reference) -> tuple[Manifest | None, str]:
        """GET a manifest by tag with its ``ETag`` (for a conditional PUT after it):
        ``(manifest, etag)``; ``(None, "")`` when there is none (404); ``etag`` '' when the
        registry sent none.

        Raises:
            RegistryError: any other answer.
        """
        resp = await self._manifest_request(
            "GET", ref, f"get manifest {ref}", self._scopes(ref, _PUSH), (200, 404)
        )
        if resp.status == 404:
            return None, ""
        return _decode(ref, resp), resp.headers.get("ETag", "")

    async def put_manifest_if_match(
        self, ref: Reference, manifest: Manifest, etag: str
    ) -> RegistryError | None:
        """PUT ``manifest.raw`` at ``ref`` only if the tag still holds what was read:
        ``If-Match: <etag>`` when ``etag`` is given (RFC 9110 conditional request), else an
        unconditional PUT. ``None`` when stored; the registry's ``412 Precondition Failed``
        answer as a :class:`RegistryError` (not raised: the tag changed since, so read it
        again) when refused.

        Raises:
            ManifestRejectedError: the registry refused the manifest.
        """
        headers = {"Content-Type": manifest.media_type}
        if etag:
            headers["If-Match"] = etag
        resp = await self.transport.request(
            "PUT", ref.registry, f"/v2/{ref.repository}/manifests/{ref.reference}",
            what=f"push {ref} ({manifest.media_type})", scopes=self._scopes(ref, _PUSH),
            headers=headers, data=manifest.raw, ok=(200, 201, 202, 412),
        )
        if resp.status != 412:
            return None
        return registry_error(f"push {ref}", "PUT", resp)


_INDEX_DOC = msgspec.json.Decoder(IndexDoc)


def _location(resp: Response, target: Reference, digest: str) -> str:
    """The upload session's ``Location`` in a ``POST .../blobs/uploads/`` answer.

    Raises:
        RegistryError: the answer has none.
    """
    location = resp.headers.get("Location", "")
    if not location:
        raise RegistryError(
            f"start upload of {digest} to {target.name}: no Location header",
            status=resp.status,
            method="POST",
            url=resp.url,
            hint="the registry does not follow the distribution-spec upload protocol",
        )
    return location


def range_end(text: str) -> int | None:
    """The last byte offset of an upload's ``Range`` header (``0-<last>``, or
    ``bytes=0-<last>`` as some registries write it); ``None`` when absent or not that form.
    """
    value = text.strip().removeprefix("bytes=")
    first, sep, last = value.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        return None
    return int(last)


class _TagList(msgspec.Struct):
    name: str = ""
    tags: list[str] | None = None


_TAG_LIST = msgspec.json.Decoder(_TagList)
def parse_links(header: str) -> list[tuple[str, dict[str, str]]]:
    """The links of a ``Link`` header (RFC 8288 section 3): ``[(URI-Reference, {param:
    value})]`` in header order.

    Links are comma-separated; each is ``<URI-Reference>`` then ``; name=value`` parameters,
    a value a token or a quoted string (which may hold commas, semicolons and ``\\``
    escapes); whitespace is allowed around ``;``, ``,`` and ``=``. Parameter names are
    lower-cased; a parameter given twice keeps its first value (section 3.3: later
    occurrences of ``rel`` are ignored); a parameter without ``=`` has the value ''. What
    cannot be read as a link (no ``<...>``) is skipped up to the next comma outside quotes.
    """
    links: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)

    def skip_ws(k: int) -> int:
        while k < n and header[k] in " \t":
            k += 1
        return k

    def quoted(k: int) -> tuple[str, int]:  # header[k] == '"'
        out: list[str] = []
        k += 1
        while k < n and header[k] != '"':
            if header[k] == "\\" and k + 1 < n:
                k += 1
            out.append(header[k])
            k += 1
        return "".join(out), k + 1

    def token(k: int, stops: str) -> tuple[str, int]:
        start = k
        while k < n and header[k] not in stops:
            k += 1
        return header[start:k].strip(), k

    while i < n:
        i = skip_ws(i)
        if i < n and header[i] == ",":
            i += 1
            continue
        if i >= n:
            break
        if header[i] != "<" or (close := header.find(">", i)) < 0:
            while i < n and header[i] != ",":  # not a link: to the next comma outside quotes
                i = quoted(i)[1] if header[i] == '"' else i + 1
            continue
        url = header[i + 1:close].strip()
        params: dict[str, str] = {}
        i = skip_ws(close + 1)
        while i < n and header[i] == ";":
            name, i = token(skip_ws(i + 1), "=;,")
            value = ""
            if i < n and header[i] == "=":
                i = skip_ws(i + 1)
                if i < n and header[i] == '"':
                    value, i = quoted(i)
                else:
                    value, i = token(i, ";,")
            params.setdefault(name.lower(), value)
            i = skip_ws(i)
        links.append((url, params))
        while i < n and header[i] != ",":  # anything after the parameters: not ours
            i = quoted(i)[1] if header[i] == '"' else i + 1
    return links


def next_link(header: str) -> str:
    """The URL of the ``rel="next"`` link of a ``Link`` header (RFC 8288), '' when none.

    The URL is returned as written: a path (``/v2/...``, as Distribution sends), a relative
    reference or an absolute URL (resolve it against the request's URL). Several links
    may be given; ``rel`` may be quoted or not and name several relation types, compared
    without regard to case (section 2.1.1); the first link whose relation types include
    ``next`` wins (:func:`parse_links` reads the header).
    """
    for url, params in parse_links(header):
        if "next" in params.get("rel", "").lower().split():
            return url
    return ""


def page_key(url: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What makes two page URLs the same page: host, path and the query's parameters in
    sorted order (``?n=2&last=b`` is ``?last=b&n=2``)."""
    parts = urlsplit(url)
    return (parts.netloc, parts.path,
            tuple(sorted(parse_qsl(parts.query, keep_blank_values=True))))


class PageTrail:
    """The pages of one paginated listing read so far, to stop a registry paging in a loop.

    ``read(url)`` records each page asked for (the answer's URL); ``follow`` checks the next
    page the ``Link`` header names before it is asked for, and raises on a loop: the page
    was read already (same host, path and query parameters, in any order), its ``last``
    (distribution-spec tag listing) was asked for already, or the page just read added no
    new entry yet names another page.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.pages: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self.lasts: set[str] = set()

    def read(self, url: str) -> None:
        """Record the page at ``url`` (absolute) as read."""
        self.pages.add(page_key(url))
        last = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get("last")
        if last is not None:
            self.lasts.add(last)

    def follow(self, resp: Response, link: str, following: str, *, added: int = -1) -> str:
        """The next page to ask for (``following``, from ``resp``'s ``Link`` header
        ``link``): a path as written, else the absolute URL it resolves to.

        Args:
            added: new entries the page added (-1: not counted).

        Raises:
            RegistryError: the registry pages in a loop (one line: the listing, the
                ``Link`` header as sent, why it is a loop).
        """
        absolute = urljoin(resp.url, following)
        last = dict(parse_qsl(urlsplit(absolute).query, keep_blank_values=True)).get("last")
        why = ""
        if page_key(absolute) in self.pages:
            why = "names a page already read"
        elif last is not None and last in self.lasts:
            why = f"asks again for the tags after last={last}"
        elif added == 0:
            why = "follows a page that listed nothing new"
        if why:
            raise RegistryError(
                f"{self.what}: the registry pages in a loop: its Link header ({link}) {why}",
                status=resp.status, method="GET", url=resp.url,
                hint="the registry or a proxy in front of it is broken: report it to its "
                "operator",
            )
        return following if following.startswith("/") else absolute


def _decode(ref: Reference, resp: Response) -> Manifest:
    """The manifest in an answer, its shape checked now; errors name the reference.

    Raises:
        UnsupportedMediaTypeError: not JSON, a Docker schema 1 manifest, not a media type
            manyfest uses, or fields of the wrong type for its media type (a list whose
            ``manifests`` is not a list of descriptors, say).
    """
    content_type = resp.headers.get("Content-Type", "")
    if not resp.body.strip():
        raise UnsupportedMediaTypeError(
            f"{ref}: the registry answered {resp.status} with an empty manifest body",
            hint="the registry or a proxy in front of it is broken: check its logs",
        )
    try:
        manifest = Manifest.from_bytes(resp.body, content_type)
    except UnsupportedMediaTypeError as exc:
        if _is_schema1(resp.body, content_type):
            served = mediatypes.base(content_type) or "schemaVersion 1"
            raise UnsupportedMediaTypeError(
                f"{ref}: a Docker schema 1 manifest ({served}): schema 1 is deprecated and "
                "not supported",
                hint="push the image again with a current docker or buildah, or convert it "
                "(skopeo copy --format v2s2)",
            ) from exc
        raise UnsupportedMediaTypeError(f"{ref}: {exc.message}", hint=exc.hint) from exc
    try:
        if manifest.is_index:
            manifest.index()
        else:
            manifest.blobs()
    except (msgspec.ValidationError, UnsupportedMediaTypeError) as exc:
        raise UnsupportedMediaTypeError(
            f"{ref}: not a valid {manifest.media_type}: {exc}",
            hint="the registry holds a malformed manifest: push the image again",
        ) from exc
    return manifest


_SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})


def _is_schema1(body: bytes, content_type: str) -> bool:
    """True for a Docker schema 1 manifest (by Content-Type or ``schemaVersion: 1``)."""
    if mediatypes.base(content_type) in _SCHEMA1_TYPES:
        return True
    try:
        probe = msgspec.json.decode(body, type=dict[str, object])
    except msgspec.DecodeError:
        return False
    return probe.get("schemaVersion") == 1


_REFUSED_TYPE_CODES = frozenset({"MANIFEST_INVALID", "UNSUPPORTED", "MANIFEST_UNSUPPORTED"})


def _refuses_media_type(exc: RegistryError) -> bool:
    """True for a refusal of the media type itself (415; 400 saying it is not supported)."""
    if exc.status == 415:
        return True
    said = " ".join(f"{e.message} {e.detail}" for e in exc.errors).lower()
    return exc.status == 400 and (
        "not supported" in said or "unsupported" in said or "UNSUPPORTED" in exc.codes
    ) and bool(exc.codes & _REFUSED_TYPE_CODES or said)


def _media_type_advice(manifest: Manifest, *, built: bool) -> str:
    """What to do when a registry refuses a media type (permanent: retrying will not help)."""
    if built:
        other = "oci" if manifest.media_type == mediatypes.DOCKER_LIST else "docker"
        return (
            f"the registry does not accept {manifest.media_type}; this will not change by "
            f"retrying: write the list as the other type (--media-type {other} on manyfest "
            "push or publish)"
        )
    return (
        f"the registry does not accept {manifest.media_type}; this will not change by "
        "retrying: convert the image first (e.g. skopeo copy --format oci or --format v2s2)"
    )
