"""Typed progress events (msgspec Structs): what the library tells its caller as it works.

The engine and the transport emit them to one sink (``on_event``); only ``cli/`` turns them
into bars, lines or JSON (``msgspec.json.encode(event)`` works for every event but
:class:`Finished`, whose ``result`` is a :class:`~manyfest.engine.ListResult`).

Each class has a ``kind`` (``phase``, ``source``, ``started``, ``resolved``, ``mounted``,
``copied``, ``pushed``, ``skipped``, ``retried``, ``throttled``, ``warned``, ``finished``,
``since``) and a
``target``: the list or reference the event concerns ('' for run-wide and registry-wide
events). Events are cheap: one per phase, source, list or retry, never one per request
(request counts are read from the transport's counters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event. ``target``: the list or reference concerned."""

    kind: ClassVar[str] = ""
    target: str = ""

    @property
    def detail(self) -> str:
        """A short text for the event (a digest, a reason): for plain-text displays."""
        return ""


class Phase(Event, frozen=True, kw_only=True):
    """A phase of a bulk publish began.

    Attributes:
        name: ``since`` (``total`` lists checked against a ``--since`` report), ``resolve``
            (``total`` distinct sources, read before any write) or ``publish`` (``total``
            lists).
        total: how many things the phase does.
    """

    kind: ClassVar[str] = "phase"
    name: str
    total: int

    @property
    def detail(self) -> str:
        return f"{self.name} {self.total}"


class SourceDone(Event, frozen=True, kw_only=True):
    """A distinct source of a bulk publish was resolved, or failed to (``target`` is the
    source reference).

    Attributes:
        digest: its manifest digest ('' when it failed).
        error: the failure's one line ('' when it resolved).
    """

    kind: ClassVar[str] = "source"
    digest: str = ""
    error: str = ""

    @property
    def detail(self) -> str:
        return self.error or self.digest


class Started(Event, frozen=True, kw_only=True):
    """Work on a list began."""

    kind: ClassVar[str] = "started"


class Resolved(Event, frozen=True, kw_only=True):
    """A source reference was resolved to a manifest (``target`` is the source)."""

    kind: ClassVar[str] = "resolved"
    digest: str

    @property
    def detail(self) -> str:
        return self.digest


class Mounted(Event, frozen=True, kw_only=True):
    """A blob was mounted into the target repository from another one (201)."""

    kind: ClassVar[str] = "mounted"
    digest: str
    source: str = ""

    @property
    def detail(self) -> str:
        return self.digest


class Copied(Event, frozen=True, kw_only=True):
    """A blob was copied (streamed) into the target repository; ``size`` in bytes."""

    kind: ClassVar[str] = "copied"
    digest: str
    size: int = 0

    @property
    def detail(self) -> str:
        return self.digest


class Pushed(Event, frozen=True, kw_only=True):
    """A child manifest was PUT by digest into the target repository."""

    kind: ClassVar[str] = "pushed"
    digest: str

    @property
    def detail(self) -> str:
        return self.digest


class SinceChecked(Event, frozen=True, kw_only=True):
    """A list of a ``--since`` run was checked against the previous report (``target``: the
    list).

    Attributes:
        outcome: ``matched`` (unchanged, not resolved) or why it goes the normal way
            (``source-changed``, ``tag-moved``).
    """

    kind: ClassVar[str] = "since"
    outcome: str

    @property
    def detail(self) -> str:
        return self.outcome


class Skipped(Event, frozen=True, kw_only=True):
    """A list was already right: nothing was written (``unchanged``)."""

    kind: ClassVar[str] = "skipped"
    digest: str

    @property
    def detail(self) -> str:
        return self.digest


class Retried(Event, frozen=True, kw_only=True):
    """An exchange is tried again after ``wait_s`` seconds.

    Attributes:
        registry: host[:port].
        what: what the exchange does (``get manifest a/b:1``).
        reason: why (``429 TOOMANYREQUESTS``, ``503``, ``cannot connect ...``,
            ``MANIFEST_BLOB_UNKNOWN``).
        wait_s: seconds waited before the next try.
        attempt: the number of the try about to be made (2 for the first retry).
    """

    kind: ClassVar[str] = "retried"
    registry: str
    what: str
    reason: str
    wait_s: float
    attempt: int

    @property
    def detail(self) -> str:
        return f"{self.reason}; try {self.attempt} in {self.wait_s:.1f} s"


class Throttled(Event, frozen=True, kw_only=True):
    """A registry throttled: every request to it slows down.

    Attributes:
        registry: host[:port].
        limit: requests now allowed in flight to it.
        wait_s: seconds every request to it waits (the pause).
        rate: pacing in requests per second (0 when not paced).
        reason: the signal (``429``, ``503``, ``429 TOOMANYREQUESTS``).
    """

    kind: ClassVar[str] = "throttled"
    registry: str
    limit: int
    wait_s: float
    rate: float = 0.0
    reason: str = ""

    @property
    def detail(self) -> str:
        paced = f", paced at {self.rate:g}/s" if self.rate else ""
        return (f"throttled by {self.registry}, {self.limit} in flight{paced}, waiting "
                f"{self.wait_s:.1f} s")


class Warned(Event, frozen=True, kw_only=True):
    """Something the user should know that does not stop the command (printed on stderr as
    ``warning: <message>``): a source index flattened, a platform outside the known table
    under ``--platform-check warn``, a list mixing Docker and OCI media types.

    Attributes:
        message: one line, naming the reference(s) concerned.
    """

    kind: ClassVar[str] = "warned"
    message: str

    @property
    def detail(self) -> str:
        return self.message


class Finished(Event, frozen=True, kw_only=True):
    """A list is done; ``result`` is its :class:`~manyfest.engine.ListResult`."""

    kind: ClassVar[str] = "finished"
    result: Any = None

    @property
    def detail(self) -> str:
        return str(self.result.status) if self.result is not None else ""


EventSink = Callable[[Event], None]
"""Receives every event, in the event loop's thread; must not block."""


def no_events(event: Event) -> None:
    """The default sink: drops every event."""
