"""The asyncio library API: one :class:`Session` holds the transport, client, engine, store.

Example::

    import anyio, manyfest

    async def main() -> None:
        async with manyfest.Session() as session:
            report = await session.publish(manyfest.load_plan("plan.yaml"))
            for result in report.results:
                print(result.target, result.status, result.digest)

    anyio.run(main)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, overload

import anyio

from manyfest import reference
from manyfest.cache import FactCache
from manyfest.engine import Engine, PublishOptions
from manyfest.events import EventSink, no_events
from manyfest.ops.entries import Attestations
from manyfest.ops.writes import RecordingClient
from manyfest.platform import Platform
from manyfest.platform import parse as parse_platform
from manyfest.reference import Reference
from manyfest.transport import Settings, Transport

if TYPE_CHECKING:  # imported where used: `inspect` and `push` start without the plan parser,
    # `publish` without the local list store and the inspect formats
    from manyfest.ops.manifests import PushOutcome
    from manyfest.ops.plan import PlanList
    from manyfest.ops.publish import PublishReport, StopRequest
    from manyfest.ops.remote_annotate import EntryChange, RemoteAnnotation
    from manyfest.ops.since import Since
    from manyfest.store import ListSettings, ManifestStore, StoredImage
    from manyfest.template import Template


class Session:
    """Everything one run needs: use as ``async with Session(settings) as session:``.

    Args:
        settings: transport settings (insecure registries, concurrency, timeouts).
        on_event: receives every progress :class:`~manyfest.events.Event` (engine and
            transport: retries and throttling included).
        store_root: the local list store (default ``$DOCKER_CONFIG/manifests``).
        cache: the on-disk cache of immutable facts (default: ``$MANYFEST_CACHE_DIR`` or the
            user cache directory; ``FactCache(enabled=False)`` turns it off).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        on_event: EventSink = no_events,
        store_root: Path | None = None,
        cache: FactCache | None = None,
    ) -> None:
        self.transport = Transport(settings, on_event=on_event)
        self.client = RecordingClient(self.transport)
        self.engine = Engine(self.client, on_event, cache if cache is not None else FactCache())
        self._store_root = store_root
        self._store: ManifestStore | None = None

    @property
    def store(self) -> ManifestStore:
        """The local list store (``create``, ``annotate``, ``push``; made on first use)."""
        if self._store is None:
            from manyfest.store import ManifestStore

            self._store = ManifestStore(self._store_root)
        return self._store

    async def __aenter__(self) -> Session:
        await self.transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: a cancelled run (an interrupt) still closes its connections and writes
        # the facts it learned (each cache file atomically).
        with anyio.CancelScope(shield=True):
            await self.transport.aclose()
            await anyio.to_thread.run_sync(self.engine.cache.flush)

    async def publish(
        self,
        plan: list[PlanList],
        *,
        options: PublishOptions | None = None,
        fail_fast: bool = False,
        stop: StopRequest | None = None,
        platforms: Sequence[Platform | str] = (),
        since: Since | None = None,
        brought: Mapping[str, Reference] | None = None,
    ) -> PublishReport:
        """Publish every list of a plan (see :func:`manyfest.ops.publish.publish`).

        ``stop``: a :class:`~manyfest.ops.publish.StopRequest` that ends the run early with
        a partial report (the CLI's SIGINT/SIGTERM). ``platforms``: ``--platform`` filters
        (``os/arch[/variant]`` text or :class:`~manyfest.platform.Platform`). ``since``: a
        previous report (:func:`manyfest.ops.since.read_report`, ``--since``). ``brought``:
        for a dry run after :meth:`copy` with ``dry_run=True``, what those copies would bring
        (:func:`manyfest.ops.copy.brought` of their results), taken as present.
        """
        from manyfest.ops.publish import publish

        filters = [p if isinstance(p, Platform) else parse_platform(p) for p in platforms]
        return await publish(
            self.engine, plan, options=options, fail_fast=fail_fast, stop=stop,
            platforms=filters, since=since, brought=brought,
        )

    async def copy(
        self,
        source: Reference | str,
        targets: Sequence[Reference | str],
        *,
        all_tags: bool = False,
        dry_run: bool = False,
        in_flight: int = 32,
        existing: Literal["fail", "skip", "overwrite"] = "overwrite",
        referrers: Literal["copy", "skip"] = "copy",
    ) -> PublishReport:
        """Copy an image or a whole index exactly (same bytes, same digests) to each target
        (see :mod:`manyfest.ops.copy`; the rules of :func:`manyfest.ops.plan.check_copy`).

        Args:
            source: a reference with a tag or digest; with ``all_tags``, a repository.
            targets: each a reference with a tag, or a repository (the source's tag kept).
            all_tags: copy every tag of the source repository into each target repository.
            dry_run: read only; each result's ``actions`` say what would be copied.
            in_flight: copies run at once.
            existing: a target tag that holds another digest: ``overwrite`` it, ``fail``
                that copy before any write, or ``skip`` it (see
                :func:`manyfest.ops.copy.copy_one`).
            referrers: ``copy``: the referrers of the source and of every child copied
                come along (:mod:`manyfest.referrers`; each result's ``referrers``);
                ``skip``: none is looked for.

        Returns:
            A :class:`~manyfest.ops.publish.PublishReport` of one result per copy
            (``kind="copy"``; failed copies carry their error).

        Raises:
            UsageError: a source or target that does not fit, before any request.
            ManyfestError: listing the source's tags failed (``all_tags``).
        """
        from manyfest.ops import copy as copying
        from manyfest.ops.plan import check_copy

        plan = check_copy(str(source), [str(t) for t in targets], all_tags=all_tags)
        return await copying.copy_report(self.engine, [plan], dry_run=dry_run,
                                         in_flight=in_flight, existing=existing,
                                         referrers=referrers)

    async def create(
        self,
        list_ref: Reference | str,
        images: Sequence[Reference | str],
        *,
        amend: bool = False,
        platform_check: str = "",
        attestations: Attestations = "keep",
        allow_duplicate_platforms: bool = False,
        settings: ListSettings | None = None,
    ) -> list[StoredImage]:
        """Create a local list (see :func:`manyfest.ops.manifests.create`).

        References may be given as text (parsed as docker does) or :class:`Reference`.
        Index sources are flattened; ``attestations="drop"`` stores none of their
        attestations; ``allow_duplicate_platforms`` stores two images of one platform.
        ``settings``: the list's media type, index annotations, artifactType, subject and
        labels to copy, kept for ``push``.
        """
        from manyfest.ops import manifests

        return await manifests.create(
            self.engine, self.store, _ref(list_ref), [_ref(i) for i in images], amend=amend,
            platform_check=platform_check,
            attestations=attestations, allow_duplicate_platforms=allow_duplicate_platforms,
            settings=settings,
        )

    async def annotate_remote(
        self,
        list_ref: Reference | str,
        entry: str,
        change: EntryChange,
        *,
        platform_check: str = "",
        allow_duplicate_platforms: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> RemoteAnnotation:
        """Change one entry of a remote index and PUT it back to its tag (see
        :func:`manyfest.ops.remote_annotate.annotate_remote`: ``platform_check`` is
        ``error|warn|off`` or '' for the default, ``warn`` receives the warnings)."""
        from manyfest.ops.remote_annotate import annotate_remote

        return await annotate_remote(
            self.engine, _ref(list_ref), entry, change, platform_check=platform_check,
            allow_duplicate_platforms=allow_duplicate_platforms, warn=warn,
        )

    async def push(
        self,
        list_ref: Reference | str,
        *,
        purge: bool = False,
        settings: ListSettings | None = None,
        existing: Literal["fail", "skip", "overwrite"] = "overwrite",
    ) -> PushOutcome:
        """Push a local list (see :func:`manyfest.ops.manifests.push`); ``settings`` override
        what ``create`` stored; ``existing``: what to do with a tag holding another digest
        (``--existing``)."""
        from manyfest.ops import manifests

        return await manifests.push(
            self.engine, self.store, _ref(list_ref), purge=purge, settings=settings,
            existing=existing,
        )

    @overload
    async def inspect(
        self,
        ref: Reference | str,
        *,
        list_ref: Reference | str | None = None,
        verbose: bool = False,
        raw: Literal[False] = False,
        platform: Platform | str | None = None,
        format: str | Template = "json",
    ) -> str: ...

    @overload
    async def inspect(
        self,
        ref: Reference | str,
        *,
        list_ref: Reference | str | None = None,
        verbose: bool = False,
        raw: Literal[True],
        platform: Platform | str | None = None,
        format: str | Template = "json",
    ) -> bytes: ...

    async def inspect(
        self,
        ref: Reference | str,
        *,
        list_ref: Reference | str | None = None,
        verbose: bool = False,
        raw: bool = False,
        platform: Platform | str | None = None,
        format: str | Template = "json",  # noqa: A002
    ) -> str | bytes:
        """docker's inspect text, or with ``raw`` the exact bytes (see
        :func:`manyfest.ops.inspect.inspect` and :func:`~manyfest.ops.inspect.inspect_raw`).

        Args:
            ref: the manifest, or local list, to show (text or :class:`Reference`).
            list_ref: show the entry ``ref`` of this local list.
            verbose: docker's ``-v`` (``ImageManifest`` objects with platform and layers).
            raw: return the exact bytes the registry served for ``ref`` (``bytes``); for a
                local list, the bytes :meth:`push` would write.
            platform: ``os/arch[/variant]`` (text or :class:`~manyfest.platform.Platform`):
                pick that child of a list as docker's ``--platform`` does; on an image, its
                platform must match.
            format: ``"json"`` (docker's output), ``"table"`` (one row per entry) or a
                template such as ``"{{.Platform}} {{.Digest}}"`` (text or a parsed
                :class:`~manyfest.template.Template`; fields in
                :data:`manyfest.ops.inspect.FIELDS`), printed once per entry.

        Raises:
            UsageError: a bad ``format`` or ``platform``, or options that do not go together
                (``raw`` with ``verbose`` or a non-json ``format``; ``verbose`` with a
                ``table`` or template format), before any request.
            NoSuchManifestError, NotFoundError: no such local list or entry, or remote
                manifest.
            NoMatchingPlatformError: ``platform`` matches no entry (or not the image).
        """
        from manyfest.ops import inspect as inspecting
        from manyfest.template import Template

        fmt = format if isinstance(format, Template) else inspecting.parse_format(format)
        wanted = parse_platform(platform) if isinstance(platform, str) else platform
        inspecting.check_options(verbose=verbose, raw=raw, format=fmt)
        lref = None if list_ref is None else _ref(list_ref)
        if raw:
            return await inspecting.inspect_raw(
                self.engine, self.store, _ref(ref), list_ref=lref, platform=wanted
            )
        return await inspecting.inspect(
            self.engine,
            self.store,
            _ref(ref),
            list_ref=lref,
            verbose=verbose,
            platform=wanted,
            format=fmt,
        )


def _ref(ref: Reference | str) -> Reference:
    """A :class:`Reference` from text or a Reference.

    Raises:
        InvalidReferenceError: the text is not a valid reference.
    """
    return ref if isinstance(ref, Reference) else reference.parse(ref)
