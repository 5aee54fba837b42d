"""One throttle per registry: how many requests may be in flight, when, and how fast.

Every task talking to a registry goes through that registry's :class:`Throttle` for each HTTP
exchange (:meth:`Throttle.slot`), so a throttle signal seen by one task slows all of them:

* **in flight** (AIMD): starts at ``--concurrency`` (the ceiling, never exceeded); halved on a
  throttle signal, at most once per *epoch* (answers to requests sent before the last cut do
  not cut again), down to an eighth of the ceiling; grown back by ``1/limit`` per successful
  answer (one per window).
* **pause**: no request starts before the end of the longest wait hint seen (``Retry-After``
  in seconds or as an HTTP date, a wait written in the error body, ``RateLimit-Reset`` when
  nothing remains); without a hint (or with a zero one, ``Retry-After: 0``), a short pause
  that doubles while signals keep coming.
* **pacing**: on a throttle signal, requests are spaced at 95% of the rate the registry
  actually served to the requests sent since the first signal (successes / seconds, pauses
  included, over the last 3 seconds; answers counted by the epoch their request was sent
  in, so a first burst and late successes do not skew it), a token-bucket limit learned
  from the registry's own answers, or the rate an error body states (GitHub's ``allowed:
  44000/minute``). The rate grows by 2% of itself per second, so it probes upward slowly.
  Pacing is on probation: when the share of throttled answers does not fall under it, the
  pace is set again to what was served meanwhile, and if that does not help either, the
  registry is not limiting the rate (a quota per request count) and pacing is dropped for
  the run; a signal after serving less than half the pace does not lower it.
  ``RateLimit-Remaining`` and ``RateLimit-Reset`` headers set the pace before the wall
  (remaining requests spread over the seconds until the reset).

A throttle signal is: status 429; status 503 with ``Retry-After``; or an OCI error code
``TOOMANYREQUESTS``, ``Rate exceeded``/``ThrottlingException`` (AWS) on any status. A 503
without a wait is "unavailable": an error, retried with backoff. :func:`signal_of` reads them.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

log = logging.getLogger("manyfest.throttle")

THROTTLE_CODES = frozenset({"TOOMANYREQUESTS", "THROTTLINGEXCEPTION", "RATE EXCEEDED",
                            "RATEEXCEEDED", "THROTTLED", "SLOWDOWN"})
"""Error codes (upper-cased) that mean "too many requests", whatever the status."""
_UNITS = (
    rb"ns|us|\xc2\xb5s|\xce\xbcs|\\u00b5s|\\u03bcs|ms|milliseconds?|seconds?|secs?|s|minutes?|"
    rb"mins?|m|h"
)
"""Go duration units (µ as UTF-8 or JSON-escaped) and words."""
_BODY_WAIT = re.compile(
    rb"retry[- _]?after\W{0,3}((?:\d+(?:\.\d+)?\s*(?:" + _UNITS + rb")?)+)", re.IGNORECASE
)
_ALLOWED = re.compile(
    rb"allowed\W{0,3}(\d+(?:\.\d+)?)\s*/\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b",
    re.IGNORECASE,
)
"""The rate a registry says it allows (GitHub: ``allowed: 44000/minute``)."""
_PER = {b"s": 1.0, b"m": 60.0, b"h": 3600.0}
_DURATION_PART = re.compile(rb"(\d+(?:\.\d+)?)\s*(" + _UNITS + rb")?", re.IGNORECASE)
_SCALE = {b"ns": 1e-9, b"us": 1e-6, "µs".encode(): 1e-6, "μs".encode(): 1e-6,
          b"\\u00b5s": 1e-6, b"\\u03bcs": 1e-6, b"ms": 1e-3, b"h": 3600.0}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

MIN_PAUSE_S = 0.25
"""Pause after a throttle signal that carries no wait hint (doubling while signals repeat)."""
MAX_PAUSE_S = 60.0
"""Longest pause taken from a hint (a registry asking for hours gets the retry deadline)."""
PACE_FACTOR = 0.95
"""Pacing rate as a fraction of the rate the registry served between two signals."""
PACE_GROWTH = 0.02
"""Pacing rate growth per second without a signal, as a fraction of the rate."""
WINDOW_S = 3.0
"""Seconds of answers the served rate is measured over."""
MIN_SERVED = 5
"""Successes since the first signal needed before a served rate is trusted."""
PROBATION = 20
"""Answers after a pace is set before judging whether it helped."""
MIN_RATE = 0.5
"""Slowest pace, in requests per second."""
FLOOR_FRACTION = 8
"""The in-flight limit is never cut below ``ceiling // FLOOR_FRACTION`` (at least 1): under a
throttle that does not depend on load, fewer requests in flight only waste the pauses."""


@dataclass(frozen=True, slots=True)
class Signal:
    """What an answer says about the registry's load.

    Attributes:
        throttled: the answer is a throttle signal (429, 503, a rate-limit error code).
        wait: seconds the registry asked to wait (``None`` when it gave no hint).
        reason: a short text for events and errors, e.g. ``429 TOOMANYREQUESTS``.
        remaining: requests left in the registry's window (``RateLimit-Remaining``).
        reset: seconds until that window resets (``RateLimit-Reset``).
        allowed: requests per second the registry says it allows (in the error body).
    """

    throttled: bool
    wait: float | None = None
    reason: str = ""
    remaining: int | None = None
    reset: float | None = None
    allowed: float | None = None


_QUIET = Signal(False)
"""A success without rate-limit headers."""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` value in seconds: delta-seconds (``"2"``, ``"1.5"``) or an HTTP date.

    Returns ``None`` for a missing or unreadable value; a date in the past is 0.
    """
    if not value:
        return None
    value = value.strip()
    if _NUMBER.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def body_wait(body: bytes) -> float | None:
    """A wait written in an error body, in seconds.

    Go durations as GitHub's registry writes them (``retry-after: 12.5ms``, ``260.653µs``,
    ``1m30s``) and words (``Retry after 2 s``, ``retry_after=3 seconds``); a bare number is
    seconds.
    """
    match = _BODY_WAIT.search(body[:4096])
    if match is None:
        return None
    total = 0.0
    for number, unit in _DURATION_PART.findall(match.group(1)):
        total += float(number) * _unit_scale(unit.lower())
    return total


def body_allowed(body: bytes) -> float | None:
    """The rate an error body says is allowed (``allowed: 44000/minute``), per second."""
    match = _ALLOWED.search(body[:4096])
    if match is None:
        return None
    return float(match.group(1)) / _PER[match.group(2)[:1].lower()]


def _unit_scale(unit: bytes) -> float:
    if unit in _SCALE:
        return _SCALE[unit]
    if unit.startswith(b"milli"):
        return 1e-3
    if unit.startswith(b"m"):
        return 60.0
    return 1.0


def _first_number(value: str | None) -> float | None:
    if not value:
        return None
    match = _NUMBER.search(value)
    return float(match.group(0)) if match else None


def signal_of(status: int, headers: Mapping[str, str], body: bytes, codes: set[str]) -> Signal:
    """Read the throttle signal and rate-limit headers of an answer.

    Args:
        status: the HTTP status.
        headers: response headers (case-insensitive mapping).
        body: the body read (may be empty for HEAD).
        codes: the OCI error codes of the body.
    """
    remaining_text = headers.get("RateLimit-Remaining") or headers.get("X-RateLimit-Remaining")
    reset_text = headers.get("RateLimit-Reset") or headers.get("X-RateLimit-Reset")
    if status < 400 and not remaining_text and not reset_text:
        return _QUIET  # most answers: read once per exchange, so kept cheap
    remaining_f = _first_number(remaining_text)
    reset = _first_number(reset_text)
    if reset is not None and reset > 1e9:  # an epoch timestamp (GitHub's X-RateLimit-Reset)
        reset = max(0.0, reset - time.time())
    remaining = None if remaining_f is None else int(remaining_f)
    upper = {c.upper() for c in codes}
    code = next(iter(sorted(upper & THROTTLE_CODES)), "")
    wait = retry_after(headers.get("Retry-After"))
    # 503 is "unavailable" (an error, retried with backoff) unless it asks for a wait.
    throttled = status == 429 or bool(code) or (status == 503 and wait is not None)
    if not throttled:
        return Signal(False, remaining=remaining, reset=reset)
    if wait is None:
        wait = body_wait(body)
    if wait is None and remaining == 0 and reset is not None:
        wait = reset
    return Signal(True, wait, f"{status}" + (f" {code}" if code else ""), remaining, reset,
                  body_allowed(body))


@dataclass(slots=True)
class _Probe:
    """A pace on probation: answers to requests sent from ``epoch`` on, and how many of them
    were throttled, against the share throttled before (``share_before``)."""

    epoch: int
    share_before: float
    since: float
    seen: int = 0
    refused: int = 0


class Throttle:
    """The shared throttle of one registry (see the module docstring).

    Args:
        registry: host[:port], for events.
        ceiling: ``--concurrency``: requests in flight never exceed it.
        clock: monotonic clock in seconds (tests may pass a fake one).
        on_throttle: called with (throttle, wait seconds, reason) when a signal cuts the limit.

    Attributes:
        limit: requests allowed in flight now (1..ceiling).
        in_flight: requests in flight now.
        rate: pacing in requests per second, or ``None`` (not paced).
        requests, throttled: exchanges made and throttle signals received, for reports.
    """

    def __init__(
        self,
        registry: str,
        ceiling: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_throttle: Callable[[Throttle, float, str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.ceiling = max(1, ceiling)
        self.floor = float(max(1, self.ceiling // FLOOR_FRACTION))
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.rate: float | None = None
        self.paused_until = 0.0
        self.requests = 0
        self.throttled = 0
        self.retries = 0
        self._clock = clock
        self._on_throttle = on_throttle
        self._waiters: deque[anyio.Event] = deque()
        self._woken = 0
        """Waiters woken for a free slot that have not yet resumed to take it: their slots
        are kept for them (one release wakes one waiter, not one per slot then free)."""
        self._epoch = 0
        self._next_slot = 0.0
        self._grown_at = 0.0
        self._starts: dict[int, float] = {}
        """When each epoch (from 1, the first signal) began."""
        self._ok: dict[int, int] = {}
        """Successful answers per epoch the request was sent in (from 1)."""
        self._answers = 0
        self._probe: _Probe | None = None
        self._strikes = 0
        self._paceable = True
        self._stated: float | None = None
        self._quiet_pause = MIN_PAUSE_S

    @property
    def capacity(self) -> int:
        """Requests allowed in flight now, as a whole number (at least 1)."""
        return max(1, int(self.limit))

    def pause_left(self) -> float:
        """Seconds until the current pause ends (0 when not paused)."""
        return max(0.0, self.paused_until - self._clock())

    # ------------------------------------------------------------------ slots

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold one request slot for one exchange; yields the epoch it was sent in."""
        epoch = await self.acquire()
        try:
            yield epoch
        finally:
            self.release()

    async def acquire(self) -> int:
        """Wait for the pause, a free slot (FIFO) and the pace; returns the epoch."""
        if (
            self.rate is None
            and self.in_flight + self._woken < self.capacity
            and not self._waiters
            and self.paused_until <= 0.0
        ):
            self.in_flight += 1
            return self._epoch
        return await self._acquire_slow()

    async def _acquire_slow(self) -> int:
        woken = False
        while True:
            now = self._clock()
            if self.paused_until > now:
                await anyio.sleep(self.paused_until - now)
                continue
            self.paused_until = 0.0
            if (self.in_flight + self._woken >= self.capacity
                    or (self._waiters and not woken)):
                event = anyio.Event()
                if woken:
                    self._waiters.appendleft(event)  # keep its place in the queue
                else:
                    self._waiters.append(event)
                try:
                    await event.wait()
                except BaseException:
                    if event.is_set():
                        self._woken -= 1
                        self._wake()  # pass on the wake-up it got
                    else:
                        self._waiters.remove(event)
                    raise
                self._woken -= 1
                woken = True
                continue
            self.in_flight += 1
            if self.rate is not None:
                self._grow_rate(now)
                at = max(now, self._next_slot)
                self._next_slot = at + 1.0 / self.rate
                if at > now:
                    try:
                        await anyio.sleep(at - now)
                    except BaseException:
                        self.release()
                        raise
                    if self.paused_until > self._clock():
                        self.release()
                        continue
            return self._epoch

    def release(self) -> None:
        """Give a slot back; wakes the next waiter."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.capacity - self.in_flight - self._woken
        while free > 0 and self._waiters:
            self._waiters.popleft().set()
            self._woken += 1
            free -= 1

    # ------------------------------------------------------------------ answers

    def answered(self, epoch: int, signal: Signal) -> float:
        """Record an answer; returns the seconds the caller should wait before a retry.

        A success grows the limit (additively) and the pace; a throttle signal pauses every
        request of the registry for its hint, cuts the limit (halves it, once per epoch) and
        sets the pace to what the registry served since the first signal.
        """
        now = self._clock()
        self._answers += 1
        if not signal.throttled:
            if epoch > 0:
                # Counted by the epoch it was sent in: answers to a burst come late (the
                # registry serves them while it refuses at once).
                self._ok[epoch] = self._ok.get(epoch, 0) + 1
                if epoch == self._epoch - 1 and self._paceable:
                    self._refine_pace(now)
            self._quiet_pause = MIN_PAUSE_S
            if self.limit < self.ceiling:
                before = self.capacity
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
                if self.capacity > before:
                    self._wake()
            if signal.remaining is not None:
                self._before_the_wall(signal.remaining, signal.reset, now)
            if self._probe is not None:
                self._judge_pace(epoch, False)
            return 0.0
        self.throttled += 1
        # A zero wait (`Retry-After: 0`) is no hint: a registry that keeps refusing "now"
        # would otherwise be asked again at once, thousands of times a second.
        hinted = signal.wait is not None and signal.wait > 0
        wait = min(MAX_PAUSE_S, signal.wait) if signal.wait and hinted else self._quiet_pause
        if not hinted:
            self._quiet_pause = min(MAX_PAUSE_S / 4, self._quiet_pause * 2)
        if now + wait > self.paused_until:
            self.paused_until = now + wait
        log.debug("%s: %s (wait %.3f s%s); epoch %d/%d, limit %.1f, rate %s", self.registry,
                  signal.reason, wait, "" if hinted else ", no hint", epoch, self._epoch,
                  self.limit, f"{self.rate:.2f}/s" if self.rate else "none")
        if signal.allowed and (self.rate is None or self.rate > signal.allowed):
            self._stated = signal.allowed
            self._pace_at(signal.allowed * PACE_FACTOR, now)  # the registry said its rate
        if epoch == self._epoch:
            self._epoch += 1
            self._starts[self._epoch] = now
            self.limit = max(self.floor, self.limit / 2)
            if not signal.allowed:
                self._set_pace(now)
            if self._on_throttle is not None:
                self._on_throttle(self, wait, signal.reason)
        if self._probe is not None:
            self._judge_pace(epoch, True)
        return wait

    def _set_pace(self, now: float) -> None:
        """Pace at what the registry served since the first signal (its limit, when busy)."""
        if not self._paceable:
            return
        served = self.served_rate()
        # A registry that throttles far below the pace we kept is not limiting the rate (a
        # quota per request count, a storm): slowing down further would only starve us.
        if served is None or (self.rate is not None and served < self.rate / 2):
            return
        self._pace_at(served * PACE_FACTOR, now)

    def _pace_at(self, rate: float, now: float) -> None:
        if self._probe is None:
            # On probation: if the share of throttled answers does not fall, the pace was too
            # high, or the registry is not limiting the rate (see _judge_pace).
            self._probe = _Probe(self._epoch, self.throttled / self._answers, now)
        self.rate = max(MIN_RATE, rate)
        self._grown_at = now
        self._next_slot = max(self._next_slot, self.paused_until)

    def _judge_pace(self, epoch: int, throttled: bool) -> None:
        """Count an answer to a request sent under the pace; after :data:`PROBATION` of
        them: did the pace help?

        If the share of throttled answers did not fall, the pace is set once more to what
        the registry served meanwhile (the first estimate may include a burst); if that does
        not help either, the throttling does not depend on the rate (a quota per request
        count) and pacing is dropped for the run.
        """
        probe = self._probe
        assert probe is not None
        if epoch < probe.epoch:
            return  # sent before the pace: says nothing about it
        probe.seen += 1
        probe.refused += throttled
        if probe.seen < PROBATION:
            return
        self._probe = None
        share = probe.refused / probe.seen
        if share <= 0.1 or share < 0.7 * probe.share_before:
            self._strikes = 0
            return
        now = self._clock()
        if self._strikes == 0 and now > probe.since:
            self._strikes = 1
            served = (probe.seen - probe.refused) / (now - probe.since)
            self._pace_at(served * PACE_FACTOR, now)
            return
        self.rate = None  # pacing did not help: throttling independent of the rate
        self._paceable = False

    def served_rate(self) -> float | None:
        """Successful answers per second to the requests sent since the first signal (pauses
        included: what the registry actually served), from at most :data:`WINDOW_S` seconds
        before the last signal up to it; ``None`` before :data:`MIN_SERVED` of them.

        Answers are counted by the epoch their request was sent in: a refusal comes back
        faster than a success, so the epoch that just ended is still being answered (its
        late successes raise the pace, see :meth:`_refine_pace`); the requests sent before
        the first signal are left out (a first burst is not a rate).
        """
        epoch = self._epoch
        if epoch < 2:
            return None
        end = self._starts[epoch]
        first = epoch - 1
        while first > 1 and self._starts[first - 1] >= end - WINDOW_S:
            first -= 1
        for old in [e for e in self._starts if e < first - 1]:
            del self._starts[old]
            self._ok.pop(old, None)
        span = end - self._starts[first]
        served = sum(self._ok.get(e, 0) for e in range(first, epoch))
        if served < MIN_SERVED or span <= 0:
            return None
        return served / span

    def _refine_pace(self, now: float) -> None:
        """A late success of the epoch that just ended: the served rate was higher."""
        served = self.served_rate()
        if served is None or self.rate is None:
            return
        pace = served * PACE_FACTOR
        if self._stated is not None:
            pace = min(pace, self._stated * PACE_FACTOR)
        if pace > self.rate:
            self.rate = pace
            self._grown_at = now

    def _grow_rate(self, now: float) -> None:
        assert self.rate is not None
        elapsed = now - self._grown_at
        if elapsed > 0:
            self.rate *= math.exp(PACE_GROWTH * min(elapsed, 60.0))
            self._grown_at = now

    def _before_the_wall(self, remaining: int, reset: float | None, now: float) -> None:
        """``RateLimit-Remaining`` is low: fewer in flight, and spread what is left."""
        if remaining >= self.capacity * 2:
            return
        self.limit = max(1.0, min(self.limit, float(max(remaining, 1))))
        if reset is not None and reset > 0:
            pace = max(remaining, 1) / reset
            if self.rate is None or pace < self.rate:
                self.rate = pace
                self._grown_at = now
