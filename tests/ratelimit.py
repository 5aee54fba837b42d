"""A registry that rate-limits: token buckets, count-based storms, the answers registries send.

Two ways to use it:

* in-process, by ``tests/quirk_proxy.py``: a :class:`Policy` (:class:`Bucket`,
  :class:`Storm`) decides for each request whether it is refused (:meth:`Policy.check`
  returns a :class:`Refusal`) or forwarded, and counts both (:attr:`Policy.counts`);
* as its own HTTP proxy process in front of the real registry, for the throttling benchmark::

      python -m tests.ratelimit --upstream 127.0.0.1:5000 --mode bucket --rate 20

  It prints ``port=<N>`` once it listens on ``127.0.0.1:<N>``, then serves until it gets
  SIGTERM/SIGINT, its standard input closes (the parent died), or ``--max-seconds`` pass;
  on the way out it prints one JSON line of counters (:meth:`Counts.as_dict`). ``GET
  /_stats`` answers the same counters at any time and is never rate-limited nor forwarded.
  Only loopback addresses are accepted for ``--listen`` and ``--upstream``.

Modes (``--mode``; :func:`policy_for`):

``bucket``
    A time-based token bucket: ``--rate R`` tokens per second, at most ``--burst B`` stored
    (default ``B = R``: one second's worth), full at start. Each request takes one token; a
    request that finds the bucket empty takes none and gets ``429`` with ``Retry-After: 1``
    and a ``text/plain`` body, as registries behind nginx or a CDN answer.
``bucket-date``
    The same, ``Retry-After`` an HTTP date (RFC 9110 section 10.2.3) ~1 s ahead.
``body-hint``
    The same bucket; the 429 has no ``Retry-After`` header, the wait is written in the JSON
    OCI error body as GitHub's registry writes it: ``{"errors": [{"code": "TOOMANYREQUESTS",
    "message": "retry-after: 12.5ms, allowed: 1200/minute"}]}`` (the time until the bucket
    holds a token, as a Go duration; the allowed rate per minute).
``remaining``
    ``bucket``, and every answer (forwarded or refused) carries ``RateLimit-Limit`` (the
    burst), ``RateLimit-Remaining`` (whole tokens left) and ``RateLimit-Reset`` (seconds until
    the bucket is full again, rounded up), as in the IETF RateLimit header fields draft.
``storm``
    Count-based, no clock: every 4th request gets ``429`` (``text/plain`` body,
    ``Retry-After`` an HTTP date ~1 s ahead), every 5th that is not a 4th gets ``503``
    without ``Retry-After`` (an overloaded backend, not a throttle signal).

Accounting (:class:`Counts`): ``forwarded`` (answered by the registry, by status),
``throttled`` (throttle answers the proxy sent: 429s, 503 with ``Retry-After``, AWS
``ThrottlingException``; by status) and ``unavailable`` (5xx without a wait hint; by status).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import io
import json
import math
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from tests.loopback import host_port, loopback

MODES = ("bucket", "bucket-date", "body-hint", "remaining", "storm")
"""The ``--mode`` values."""
STATS_PATH = "/_stats"
"""The counters endpoint of the proxy process (never rate-limited, never forwarded)."""
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "host", "content-encoding"})
"""Headers not copied between the client and the registry."""

Clock = Callable[[], float]


# ---------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer sent instead of the registry's.

    Attributes:
        status: HTTP status.
        headers: response headers (``Content-Type`` included).
        body: response body.
        throttle: True when the answer is a throttle signal (429, a 503 with
            ``Retry-After``, ``ThrottlingException``), counted in ``Counts.throttled``;
            False for a plain server error, counted in ``Counts.unavailable``.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    throttle: bool = True


def http_date(seconds_ahead: float, clock: Clock = time.time) -> str:
    """An IMF-fixdate ``seconds_ahead`` from now, rounded to the nearest second (so the wait
    it means is ``seconds_ahead`` +- 0.5 s)."""
    return email.utils.formatdate(round(clock() + seconds_ahead), usegmt=True)


def go_duration(seconds: float) -> str:
    """``seconds`` written as Go's ``time.Duration.String`` does: ``12.5ms``, ``260.653µs``,
    ``1.5s`` (rounded to the nanosecond; at most 3 decimals here, trailing zeros dropped)."""
    ns = max(0, round(seconds * 1e9))
    for unit, scale in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if ns >= scale or unit == "µs":
            text = f"{ns / scale:.3f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    raise AssertionError("unreachable")


def text_429(retry_after: str | None = "1") -> Refusal:
    """``429 Too Many Requests``, a ``text/plain`` body, ``Retry-After`` when given."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Refusal(429, headers, b"429 Too Many Requests: request rate limit exceeded\n")


def html_429(retry_after: str | None = "1") -> Refusal:
    """``429`` with the HTML page a front proxy (nginx ``limit_req``) writes."""
    headers = {"Content-Type": "text/html"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = (b"<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
            b"<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
            b"</body>\r\n</html>\r\n")
    return Refusal(429, headers, body)


def oci_error(status: int, code: str, message: str, retry_after: str | None = None,
              *, throttle: bool = True) -> Refusal:
    """A JSON OCI error body (distribution-spec "Error Codes") with one error."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
    return Refusal(status, headers, body.encode(), throttle)


def ecr_rate_exceeded() -> Refusal:
    """What Amazon ECR's registry answers when throttling: ``429``, code ``TOOMANYREQUESTS``,
    message ``Rate exceeded``, no ``Retry-After``."""
    return oci_error(429, "TOOMANYREQUESTS", "Rate exceeded")


def throttling_exception() -> Refusal:
    """An AWS JSON-protocol throttle: ``400``, ``x-amzn-ErrorType: ThrottlingException``,
    body ``{"__type": "ThrottlingException", "message": "Rate exceeded"}``."""
    body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
    return Refusal(400, {"Content-Type": "application/x-amz-json-1.1",
                         "x-amzn-ErrorType": "ThrottlingException"}, body)


def unavailable_503(retry_after: str | None = None) -> Refusal:
    """``503 Service Unavailable``, ``text/plain``; a throttle signal only with
    ``Retry-After``."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Refusal(503, headers, b"503 Service Unavailable\n", retry_after is not None)


# ---------------------------------------------------------------------------- policies


@dataclass(slots=True)
class Counts:
    """What a policy let through and what it refused.

    Attributes:
        forwarded: answers of the registry, by status.
        throttled: throttle answers sent by the proxy, by status.
        unavailable: server errors without a wait hint sent by the proxy, by status.
    """

    forwarded: Counter[int] = field(default_factory=Counter)
    throttled: Counter[int] = field(default_factory=Counter)
    unavailable: Counter[int] = field(default_factory=Counter)

    @property
    def answered(self) -> int:
        """Requests answered by the registry."""
        return sum(self.forwarded.values())

    @property
    def throttles(self) -> int:
        """Throttle answers sent."""
        return sum(self.throttled.values())

    @property
    def refused(self) -> int:
        """Every answer the proxy sent instead of the registry (throttles and 5xx)."""
        return self.throttles + sum(self.unavailable.values())

    @property
    def total(self) -> int:
        """Every request seen."""
        return self.answered + self.refused

    def count(self, refusal: Refusal | None, status: int = 0) -> None:
        """Count one answer: ``refusal``, or the registry's ``status`` when None."""
        if refusal is None:
            self.forwarded[status] += 1
        elif refusal.throttle:
            self.throttled[refusal.status] += 1
        else:
            self.unavailable[refusal.status] += 1

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: totals, then each counter by status (string keys)."""
        return {
            "requests": self.total,
            "answered": self.answered,
            "throttled": self.throttles,
            "refused": self.refused,
            "forwarded_by_status": {str(k): v for k, v in sorted(self.forwarded.items())},
            "throttled_by_status": {str(k): v for k, v in sorted(self.throttled.items())},
            "unavailable_by_status": {str(k): v for k, v in sorted(self.unavailable.items())},
        }


class Policy:
    """Decides, request by request, whether the registry answers; counts what happened.

    Subclasses implement :meth:`decide`. All methods run on one event loop thread.
    """

    def __init__(self) -> None:
        self.counts = Counts()

    def decide(self, method: str, path: str) -> Refusal | None:
        """The refusal for this request, or None to forward it."""
        raise NotImplementedError

    def check(self, method: str, path: str) -> Refusal | None:
        """:meth:`decide`, counting a refusal (a forwarded one is counted by
        :meth:`forwarded` once the registry answered)."""
        refusal = self.decide(method, path)
        if refusal is not None:
            self.counts.count(refusal)
        return refusal

    def forwarded(self, status: int) -> None:
        """The registry answered a forwarded request with ``status``."""
        self.counts.count(None, status)

    def extra_headers(self) -> dict[str, str]:
        """Headers added to every answer (forwarded or refused); none by default."""
        return {}


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored, full at start.

    Args:
        rate: tokens added per second (> 0).
        burst: capacity (>= 1).
        clock: monotonic seconds.
    """

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> float:
        """Take a token: 0.0 when taken, else the seconds until one is there (none taken)."""
        self._refill()
        if self.tokens >= 1.0 - 1e-9:  # float sums of elapsed time: 0.999999... is a token
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def remaining(self) -> int:
        """Whole tokens in the bucket now."""
        self._refill()
        return int(self.tokens)

    def reset_s(self) -> int:
        """Seconds until the bucket is full again, rounded up."""
        self._refill()
        return math.ceil((self.burst - self.tokens) / self.rate)


class Bucket(Policy):
    """A token bucket in front of the registry (modes ``bucket``, ``bucket-date``,
    ``body-hint``, ``remaining``).

    Args:
        rate: requests per second allowed.
        burst: requests allowed at once after a quiet second (default: ``rate``).
        answer: the refusal: ``"seconds"`` (``text/plain``, ``Retry-After: 1``),
            ``"date"`` (``Retry-After`` an HTTP date ~1 s ahead), ``"body-hint"`` (JSON
            TOOMANYREQUESTS, the wait in the message, no header), ``"html"`` (nginx's page,
            ``Retry-After: 1``), ``"ecr"`` (:func:`ecr_rate_exceeded`), ``"aws"``
            (:func:`throttling_exception`).
        remaining: send ``RateLimit-*`` headers on every answer.
        clock: monotonic seconds.
    """

    ANSWERS = ("seconds", "date", "body-hint", "html", "ecr", "aws")

    def __init__(self, rate: float, burst: float | None = None, *, answer: str = "seconds",
                 remaining: bool = False, clock: Clock = time.monotonic) -> None:
        super().__init__()
        if answer not in self.ANSWERS:
            raise ValueError(f"unknown answer {answer!r}: one of {', '.join(self.ANSWERS)}")
        self.bucket = TokenBucket(rate, rate if burst is None else burst, clock)
        self.answer = answer
        self.remaining = remaining

    def decide(self, method: str, path: str) -> Refusal | None:
        """Refuse when the bucket is empty."""
        wait = self.bucket.take()
        if wait <= 0:
            return None
        if self.answer == "date":
            return text_429(http_date(1.0))
        if self.answer == "body-hint":
            per_minute = f"{self.bucket.rate * 60:g}"
            return oci_error(429, "TOOMANYREQUESTS",
                             f"retry-after: {go_duration(wait)}, allowed: {per_minute}/minute")
        if self.answer == "html":
            return html_429("1")
        if self.answer == "ecr":
            return ecr_rate_exceeded()
        if self.answer == "aws":
            return throttling_exception()
        return text_429("1")

    def extra_headers(self) -> dict[str, str]:
        """``RateLimit-Limit``/``-Remaining``/``-Reset`` when ``remaining`` is on."""
        if not self.remaining:
            return {}
        return {"RateLimit-Limit": f"{self.bucket.burst:g}",
                "RateLimit-Remaining": str(self.bucket.remaining()),
                "RateLimit-Reset": str(self.bucket.reset_s())}


class Storm(Policy):
    """Count-based refusals, no clock: request ``n`` (from 1, in arrival order) gets
    ``throttle_answer()`` when ``n % every_429 == 0``, else :func:`unavailable_503` when
    ``n % every_503 == 0``, else the registry's answer.

    Args:
        every_429: period of the throttle answers (1: every request, a storm that never
            ends); 0 turns them off.
        every_503: period of the 503s (0: none).
        throttle_answer: builds the throttle answer (default: ``text/plain`` 429,
            ``Retry-After`` an HTTP date ~1 s ahead).
        match: only requests whose path contains this are counted and refused.
        limit: stop refusing after this many refusals (None: never stop).
    """

    def __init__(self, every_429: int = 4, every_503: int = 5, *,
                 throttle_answer: Callable[[], Refusal] | None = None, match: str = "",
                 limit: int | None = None) -> None:
        super().__init__()
        self.every_429 = every_429
        self.every_503 = every_503
        self.throttle_answer = throttle_answer or (lambda: text_429(http_date(1.0)))
        self.match = match
        self.limit = limit
        self.seen = 0

    def decide(self, method: str, path: str) -> Refusal | None:
        """Refuse every ``every_429``-th / ``every_503``-th matching request."""
        if self.match not in path:
            return None
        if self.limit is not None and self.counts.refused >= self.limit:
            return None
        self.seen += 1
        if self.every_429 and self.seen % self.every_429 == 0:
            return self.throttle_answer()
        if self.every_503 and self.seen % self.every_503 == 0:
            return unavailable_503()
        return None


def policy_for(mode: str, rate: float = 0.0, burst: float | None = None) -> Policy:
    """The policy of a ``--mode`` (see the module docstring).

    Raises:
        ValueError: unknown mode, or a bucket mode without a positive ``rate``.
    """
    if mode == "storm":
        return Storm()
    answers = {"bucket": "seconds", "bucket-date": "date", "body-hint": "body-hint",
               "remaining": "seconds"}
    if mode not in answers:
        raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    if rate <= 0:
        raise ValueError(f"mode {mode} needs --rate > 0")
    return Bucket(rate, burst, answer=answers[mode], remaining=mode == "remaining")


# ---------------------------------------------------------------------------- proxying


def refusal_response(refusal: Refusal, method: str, extra: dict[str, str]) -> web.Response:
    """The aiohttp answer for ``refusal`` (no body for HEAD)."""
    return web.Response(status=refusal.status, headers={**refusal.headers, **extra},
                        body=None if method == "HEAD" else refusal.body)


async def forward(session: aiohttp.ClientSession, upstream: str, public: str,
                  request: web.Request, *, query: str | None = None) -> web.Response:
    """Send ``request`` to ``http://<upstream>`` and return its answer for the client.

    Absolute ``Location`` headers and the ``WWW-Authenticate`` realm naming ``upstream`` are
    rewritten to ``public`` (the proxy's ``host:port``), so clients never go around the
    proxy. Bodies are read whole (registry test content is small).

    Args:
        session: the client session to the registry (``auto_decompress=False``).
        upstream: the registry's ``host:port``.
        public: the proxy's ``host:port``.
        request: the client's request.
        query: another query string to send instead of the request's.
    """
    qs = request.query_string if query is None else query
    url = f"http://{upstream}{request.path}" + (f"?{qs}" if qs else "")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    body = await request.read()
    # a file-like body: aiohttp warns (an error under pytest) about large bytes bodies
    async with session.request(request.method, url, headers=headers,
                               data=io.BytesIO(body) if body else None,
                               allow_redirects=False) as up:
        data = await up.read()
        out = {k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}
    for name in ("Location", "WWW-Authenticate"):
        if name in out:
            out[name] = out[name].replace(upstream, public)
    return web.Response(status=up.status, body=data if request.method != "HEAD" else None,
                        headers=out)


class RateLimitServer:
    """The proxy of ``python -m tests.ratelimit`` inside a running event loop.

    Args:
        upstream: the registry's ``host:port`` (loopback).
        policy: what to refuse.
    """

    def __init__(self, upstream: str, policy: Policy) -> None:
        self.upstream = upstream
        self.policy = policy
        self.public = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == STATS_PATH and request.method == "GET":
            return web.json_response(self.policy.counts.as_dict())
        refusal = self.policy.check(request.method, request.path_qs)
        if refusal is not None:
            await request.read()
            return refusal_response(refusal, request.method, self.policy.extra_headers())
        assert self._session is not None
        try:
            response = await forward(self._session, self.upstream, self.public, request)
        except aiohttp.ClientError:
            self.policy.forwarded(502)
            return web.Response(status=502, text="502 Bad Gateway: registry unreachable\n")
        self.policy.forwarded(response.status)
        response.headers.update(self.policy.extra_headers())
        return response

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start serving; returns the port."""
        self._session = aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(limit=0))
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, backlog=1024).start()
        bound = int(self._runner.addresses[0][1])
        self.public = f"{host}:{bound}"
        return bound

    async def close(self) -> None:
        """Stop serving and close the registry session."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


async def _serve(args: argparse.Namespace) -> None:
    host, port = host_port(args.upstream, "ratelimit")
    server = RateLimitServer(f"{host}:{port}", policy_for(args.mode, args.rate, args.burst))
    bound = await server.listen(loopback(args.listen, "ratelimit"), args.port)
    print(f"port={bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    watcher: asyncio.Task[None] | None = None
    with contextlib.suppress(ValueError, OSError):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            await reader.read()
            stop.set()

        watcher = loop.create_task(watch_stdin())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    if watcher is not None:
        watcher.cancel()
    await server.close()
    print(json.dumps(server.policy.counts.as_dict()), flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.ratelimit``."""
    parser = argparse.ArgumentParser(prog="python -m tests.ratelimit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="registry host:port (loopback)")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (bucket modes)")
    parser.add_argument("--burst", type=float, default=None,
                        help="bucket capacity in requests (default: the rate)")
    parser.add_argument("--listen", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="stop by itself after this long")
    args = parser.parse_args(argv)
    try:
        policy_for(args.mode, args.rate, args.burst)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(_serve(args))
    return 0


@dataclass
class RateLimitProcess:
    """``python -m tests.ratelimit`` as a child process; a context manager.

    Attributes:
        upstream: the registry's ``host:port``.
        mode, rate, burst: see the module docstring.
        port: the proxy's port once started.
        final: the counters it printed on exit (after :meth:`stop`).
    """

    upstream: str
    mode: str
    rate: float = 0.0
    burst: float | None = None
    max_seconds: float = 3600.0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: what clients use as the registry name."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> RateLimitProcess:
        """Start the proxy and wait until it prints its port.

        Raises:
            RuntimeError: it exited or printed something else first.
        """
        root = Path(__file__).resolve().parent.parent
        cmd = [sys.executable, "-m", "tests.ratelimit", "--upstream", self.upstream,
               "--mode", self.mode, "--rate", str(self.rate),
               "--max-seconds", str(self.max_seconds)]
        if self.burst is not None:
            cmd += ["--burst", str(self.burst)]
        self.process = subprocess.Popen(cmd, cwd=root, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("port="):
            self.stop()
            raise RuntimeError(f"ratelimit proxy did not start: {line!r}")
        self.port = int(line.strip().partition("=")[2])
        return self

    def stats(self) -> dict[str, Any]:
        """The counters now (``GET /_stats``; :meth:`Counts.as_dict`)."""
        with urllib.request.urlopen(f"http://{self.host}{STATS_PATH}", timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self) -> None:
        """Stop it (SIGTERM, SIGKILL after 10 s) and read the counters it printed."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = out.decode(errors="replace").strip().splitlines()
        with contextlib.suppress(ValueError, IndexError):
            self.final = json.loads(lines[-1])

    def __enter__(self) -> RateLimitProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
