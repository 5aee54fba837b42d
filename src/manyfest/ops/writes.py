"""Which tags a run has written, or was writing: what an interrupted run reports.

:class:`RecordingClient` is the session's :class:`~manyfest.registry.RegistryClient`; it
notes every manifest PUT by tag (a tag moving) when it starts and when the registry has
answered. After a cancellation, a PUT started and not answered is one whose outcome is
unknown: the registry may have stored it (the tag then points at the new, complete list:
the registry refuses a list whose children are missing) or not (the tag is where it was).
"""

from __future__ import annotations

from typing import Any

import anyio

from manyfest.content import Manifest
from manyfest.reference import Reference
from manyfest.registry.routing import RoutingClient
from manyfest.transport import Transport


class RecordingClient(RoutingClient):
    """A :class:`~manyfest.registry.RegistryClient` that records manifest PUTs by tag (and
    answers OCI layout references from the file system: :class:`RoutingClient`).

    Attributes:
        tags_in_flight: ``str(reference)`` of tag PUTs sent and not answered yet (after a
            cancellation: those whose outcome is unknown).
        tags_written: ``str(reference)`` of tag PUTs the registry accepted.
    """

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport)
        self.tags_in_flight: set[str] = set()
        self.tags_written: set[str] = set()

    async def put_manifest(self, ref: Reference, manifest: Manifest, **options: Any) -> str:
        """PUT as :meth:`RegistryClient.put_manifest` (``options`` passed on unchanged),
        noting tag PUTs (not digest PUTs)."""
        if ref.digest or not ref.tag:
            return await super().put_manifest(ref, manifest, **options)
        key = str(ref)
        self.tags_in_flight.add(key)
        try:
            digest = await super().put_manifest(ref, manifest, **options)
        except anyio.get_cancelled_exc_class():
            raise  # cut off: the outcome is unknown, the PUT stays "in flight"
        except BaseException:
            self.tags_in_flight.discard(key)  # an answer (a refusal): the tag did not move
            raise
        self.tags_in_flight.discard(key)
        self.tags_written.add(key)
        return digest
