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

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import anyio

from manyfest import reference
from manyfest.cache import FactCache
from manyfest.engine import Engine, PublishOptions
from manyfest.events import EventSink, no_events
from manyfest.ops import manifests
from manyfest.ops.plan import PlanList
from manyfest.ops.publish import PublishReport, StopRequest, publish
from manyfest.ops.writes import RecordingClient
from manyfest.reference import Reference
from manyfest.store import ListSettings, ManifestStore, StoredImage
from manyfest.transport import Settings, Transport


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
        self.store = ManifestStore(store_root)

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
    ) -> PublishReport:
        """Publish every list of a plan (see :func:`manyfest.ops.publish.publish`).

        ``stop``: a :class:`~manyfest.ops.publish.StopRequest` that ends the run early with
        a partial report (the CLI's SIGINT/SIGTERM).
        """
        return await publish(
            self.engine, plan, options=options, fail_fast=fail_fast, stop=stop
        )

    async def create(
        self,
        list_ref: Reference | str,
        images: Sequence[Reference | str],
        *,
        amend: bool = False,
        settings: ListSettings | None = None,
    ) -> list[StoredImage]:
        """Create a local list (see :func:`manyfest.ops.manifests.create`).

        References may be given as text (parsed as docker does) or :class:`Reference`.
        ``settings``: the list's media type, index annotations, artifactType, subject and
        labels to copy, kept for ``push``.
        """
        return await manifests.create(
            self.engine, self.store, _ref(list_ref), [_ref(i) for i in images], amend=amend,
            settings=settings,
        )

    async def push(
        self,
        list_ref: Reference | str,
        *,
        purge: bool = False,
        settings: ListSettings | None = None,
    ) -> manifests.PushOutcome:
        """Push a local list (see :func:`manyfest.ops.manifests.push`); ``settings`` override
        what ``create`` stored."""
        return await manifests.push(
            self.engine, self.store, _ref(list_ref), purge=purge, settings=settings
        )

    async def inspect(
        self,
        ref: Reference | str,
        *,
        list_ref: Reference | str | None = None,
        verbose: bool = False,
    ) -> str:
        """docker's inspect text (see :func:`manyfest.ops.manifests.inspect`)."""
        return await manifests.inspect(
            self.engine,
            self.store,
            _ref(ref),
            list_ref=None if list_ref is None else _ref(list_ref),
            verbose=verbose,
        )


def _ref(ref: Reference | str) -> Reference:
    """A :class:`Reference` from text or a Reference.

    Raises:
        InvalidReferenceError: the text is not a valid reference.
    """
    return ref if isinstance(ref, Reference) else reference.parse(ref)
