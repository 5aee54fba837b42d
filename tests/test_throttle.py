"""The per-registry throttle: signals read from answers, AIMD in flight, pause, pacing."""

from __future__ import annotations

import email.utils
import time

import anyio
import pytest
from multidict import CIMultiDict

from manyfest.transport.throttle import (
    MIN_PAUSE_S,
    PACE_FACTOR,
    Signal,
    Throttle,
    body_wait,
    retry_after,
    signal_of,
)


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after("2") == 2.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after(None) is None
    assert retry_after("soon") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 3, usegmt=True)
    assert retry_after(date, now=now) == pytest.approx(3.0)
    assert retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"retry-after: 12.5ms, allowed: '
         b'44000/minute"}]}', 0.0125),
        (b"Too many requests. Retry after 2 s", 2.0),
        (b"retry_after=3 seconds", 3.0),
        (b"Retry-After: 1 minute", 60.0),
        (b"retry after 250 milliseconds", 0.25),
        ("retry-after: 260.653µs, allowed: 44000/minute".encode(), 0.000260653),
        (b"retry-after: 1m30s", 90.0),
        (b"retry-after: 150ns", 1.5e-7),
        # json.dumps escapes the micro sign
        (b'{"message": "retry-after: 260.653\\u00b5s, allowed: 3000/minute"}', 0.000260653),
        (b"<html><body>429 Too Many Requests</body></html>", None),
    ],
)
def test_waits_written_in_bodies(body: bytes, seconds: float | None) -> None:
    assert body_wait(body) == (pytest.approx(seconds) if seconds is not None else None)


def test_signals_of_answers() -> None:
    ok = signal_of(200, headers(), b"", set())
    assert ok == Signal(False)
    assert signal_of(429, headers(Retry_After="1"), b"slow down", set()) == Signal(
        True, 1.0, "429"
    )
    assert signal_of(503, headers(Retry_After="2"), b"", set()) == Signal(True, 2.0, "503")
    assert not signal_of(503, headers(), b"", set()).throttled  # unavailable: an error
    # AWS ECR: 400 ThrottlingException "Rate exceeded"
    ecr = signal_of(400, headers(), b"{}", {"ThrottlingException"})
    assert (ecr.throttled, ecr.reason) == (True, "400 THROTTLINGEXCEPTION")
    hinted = signal_of(429, headers(), b'{"errors":[{"code":"TOOMANYREQUESTS","message":'
                       b'"retry-after: 40ms, allowed: 3000/minute"}]}', {"TOOMANYREQUESTS"})
    assert hinted.wait == pytest.approx(0.04)
    assert hinted.allowed == pytest.approx(50.0)
    assert hinted.reason == "429 TOOMANYREQUESTS"
    # Docker Hub's headers: "76;w=21600"
    hub = signal_of(200, headers(ratelimit_remaining="76;w=21600", ratelimit_reset="30"),
                    b"", set())
    assert (hub.throttled, hub.remaining, hub.reset) == (False, 76, 30.0)
    wall = signal_of(429, headers(RateLimit_Remaining="0", RateLimit_Reset="7"), b"", set())
    assert wall.wait == 7.0  # nothing remains: wait for the reset
    assert not signal_of(404, headers(), b"", {"MANIFEST_UNKNOWN"}).throttled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cut_once_per_epoch_and_grow_back() -> None:
    clock = Clock()
    events: list[tuple[int, float, str]] = []
    throttle = Throttle("r", 64, clock=clock,
                        on_throttle=lambda t, wait, reason: events.append((t.capacity, wait,
                                                                           reason)))
    epoch = throttle._epoch
    assert throttle.answered(epoch, Signal(True, 1.0, "429")) == 1.0
    assert throttle.capacity == 32
    assert throttle.paused_until == clock.now + 1.0
    # Answers to requests sent before the cut do not cut again, but longer hints extend the pause.
    throttle.answered(epoch, Signal(True, 2.0, "429"))
    assert throttle.capacity == 32
    assert throttle.paused_until == clock.now + 2.0
    assert events == [(32, 1.0, "429")]
    assert throttle.throttled == 2
    # Additive growth: +1 per window of successes (1/limit each).
    for _ in range(33):
        throttle.answered(throttle._epoch, Signal(False))
    assert throttle.capacity == 33
    # Never above the ceiling.
    for _ in range(10_000):
        throttle.answered(throttle._epoch, Signal(False))
    assert throttle.limit == 64


def test_a_zero_wait_is_no_hint() -> None:
    """`Retry-After: 0` repeated: the pause doubles as without a hint (never 0 s: a registry
    refusing "now" is not asked again thousands of times a second)."""
    from manyfest.transport.throttle import MIN_PAUSE_S

    throttle = Throttle("r", 64, clock=Clock())
    waits = [throttle.answered(throttle._epoch, Signal(True, 0.0, "429")) for _ in range(4)]
    assert waits == [MIN_PAUSE_S, 2 * MIN_PAUSE_S, 4 * MIN_PAUSE_S, 8 * MIN_PAUSE_S]
    throttle.answered(throttle._epoch, Signal(False))  # a success resets the pause
    assert throttle.answered(throttle._epoch, Signal(True, 0.0, "429")) == MIN_PAUSE_S


def test_pace_learned_from_what_the_registry_served() -> None:
    clock = Clock()
    throttle = Throttle("r", 64, clock=clock)
    for _ in range(20):  # a first burst: not a rate
        throttle.answered(0, Signal(False))
    clock.now += 0.05
    throttle.answered(0, Signal(True, 1.0, "429"))  # epoch 1 begins
    for _ in range(30):  # the rest of the first burst: answered late, not a rate
        throttle.answered(0, Signal(False))
    clock.now += 1.0  # the pause
    for _ in range(10):  # sent in epoch 1
        throttle.answered(1, Signal(False))
        clock.now += 0.01
    throttle.answered(1, Signal(True, 1.0, "429"))  # epoch 2 begins
    # epoch 1 (10 successes so far) lasted the 1.1 s from the first signal to the second
    assert throttle.rate == pytest.approx(10 / 1.1 * PACE_FACTOR)
    clock.now += 0.01
    for _ in range(4):  # epoch 1's last answers come late: the pace was higher
        throttle.answered(1, Signal(False))
    assert throttle.rate == pytest.approx(14 / 1.1 * PACE_FACTOR)


def test_pacing_dropped_when_it_does_not_help() -> None:
    """Every 4th request throttled whatever the pace (a count quota): pacing goes."""
    clock = Clock()
    throttle = Throttle("r", 64, clock=clock)
    for i in range(200):
        throttle.answered(throttle._epoch, Signal(i % 4 == 3, 0.5 if i % 4 == 3 else None,
                                                  "429"))
        clock.now += 0.05
    assert throttle.rate is None
    assert throttle.capacity == 8  # an eighth of the ceiling: the floor


def test_pacing_kept_when_it_helps() -> None:
    clock = Clock()
    throttle = Throttle("r", 64, clock=clock)
    throttle.answered(0, Signal(True, 0.01, "429"))
    while throttle.rate is None:  # bursts, mostly throttled: one success per 20 ms
        epoch = throttle._epoch
        throttle.answered(epoch, Signal(False))
        clock.now += 0.02
        for _ in range(7):
            throttle.answered(epoch, Signal(True, 0.01, "429"))
    paced = throttle.rate
    assert paced == pytest.approx(1 / 0.02 * PACE_FACTOR)
    for _ in range(50):  # paced: the registry stops throttling
        throttle.answered(throttle._epoch, Signal(False))
        clock.now += 1 / paced
    assert throttle.rate is not None
    assert throttle.rate >= paced  # kept (and grown)


def test_pace_not_lowered_by_a_throttle_that_ignores_the_rate() -> None:
    clock = Clock()
    throttle = Throttle("r", 64, clock=clock)
    throttle.answered(throttle._epoch, Signal(True, 1.0, "429"))
    throttle.rate = 40.0
    for _ in range(6):  # served 6 in 3 s while allowed 40/s: not a rate limit
        throttle.answered(throttle._epoch, Signal(False))
        clock.now += 0.5
    throttle.answered(throttle._epoch, Signal(True, 1.0, "429"))
    assert throttle.rate == pytest.approx(40.0)


def test_pace_from_the_rate_the_registry_states() -> None:
    clock = Clock()
    throttle = Throttle("r", 64, clock=clock)
    throttle.answered(0, Signal(True, 0.01, "429", allowed=50.0))
    assert throttle.rate == pytest.approx(50.0 * PACE_FACTOR)


def test_no_hint_pause_doubles_while_signals_repeat() -> None:
    clock = Clock()
    throttle = Throttle("r", 8, clock=clock)
    assert throttle.answered(throttle._epoch, Signal(True, None, "503")) == MIN_PAUSE_S
    assert throttle.answered(throttle._epoch, Signal(True, None, "503")) == 2 * MIN_PAUSE_S
    throttle.answered(throttle._epoch, Signal(False))
    assert throttle.answered(throttle._epoch, Signal(True, None, "503")) == MIN_PAUSE_S


def test_remaining_slows_down_before_the_wall() -> None:
    clock = Clock()
    throttle = Throttle("r", 64, clock=clock)
    throttle.answered(0, Signal(False, remaining=500, reset=10))
    assert (throttle.capacity, throttle.rate) == (64, None)
    throttle.answered(0, Signal(False, remaining=10, reset=5))
    assert throttle.capacity == 10
    assert throttle.rate == pytest.approx(2.0)


@pytest.mark.anyio
async def test_slots_are_limited_and_fifo() -> None:
    throttle = Throttle("r", 2)
    order: list[int] = []
    entered = anyio.Event()
    release = anyio.Event()

    async def worker(i: int) -> None:
        async with throttle.slot():
            order.append(i)
            if len(order) == 2:
                entered.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(worker, i)
            await anyio.wait_all_tasks_blocked()
        await entered.wait()
        assert order == [0, 1]
        assert throttle.in_flight == 2
        release.set()
    assert order == [0, 1, 2, 3, 4]
    assert throttle.in_flight == 0


@pytest.mark.anyio
async def test_a_release_wakes_one_waiter_per_free_slot() -> None:
    # Two slots freed back to back wake two waiters, not three: a waiter woken for a slot
    # keeps it until it resumes (no wake-up for a slot another woken waiter will take).
    throttle = Throttle("r", 2)
    await throttle.acquire()
    await throttle.acquire()
    got: list[int] = []

    async def waiter(i: int) -> None:
        await throttle.acquire()
        got.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(waiter, i)
        await anyio.wait_all_tasks_blocked()
        assert len(throttle._waiters) == 3
        throttle.release()
        throttle.release()
        assert len(throttle._waiters) == 1  # the third still waits in its place
        await anyio.wait_all_tasks_blocked()
        assert got == [0, 1]
        assert (throttle.in_flight, len(throttle._waiters)) == (2, 1)
        throttle.release()
    assert got == [0, 1, 2]
    assert throttle.in_flight == 2


@pytest.mark.anyio
async def test_pause_holds_every_new_request() -> None:
    throttle = Throttle("r", 4)
    throttle.answered(throttle._epoch, Signal(True, 0.2, "429"))
    started = time.monotonic()
    async with throttle.slot():
        waited = time.monotonic() - started
    assert waited >= 0.19  # a lower bound only: the pause is never cut short


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
