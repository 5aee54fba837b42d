"""A loopback TCP relay that adds round-trip time: ``client <-> relay <-> registry``.

Every chunk read from one side is written to the other side ``rtt/2`` after it arrived, in
arrival order, per direction; connections never wait for each other (each chunk is scheduled
at arrival + delay, so many requests are in flight at once, as over a real long link).

A new connection also pays the TCP handshake: the client's bytes are held until ``rtt`` after
the relay accepted it (SYN, SYN-ACK), then take ``rtt/2`` like every chunk, so the first
request on a new connection costs 1.5 RTT before the server sees it, as on a real network.

Run it as a process (the benchmark harness does, so its CPU is not the client's)::

    python -m benchmarks.relay --upstream 127.0.0.1:5000 --rtt-ms 20

It prints ``port=<N>`` once it listens on ``127.0.0.1:<N>``, then relays until it gets
SIGTERM/SIGINT, its standard input closes (the harness died), or ``--max-seconds`` pass.
Only loopback addresses are accepted for ``--listen`` and ``--upstream``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.loopback import host_port, loopback

_EOF = object()
_CLOSE = object()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection (the client's, or the upstream's)."""

    def __init__(self, relay: _Connection) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.out: _Direction | None = None  # what this side reads goes out through here
        self.eof_in = False
        self.eof_out = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.out is not None
        self.out.push(data)

    def eof_received(self) -> bool:
        self.eof_in = True
        assert self.out is not None
        self.out.push(_EOF)
        self._maybe_close()
        return True  # keep the write half open until the other side is done too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.out is not None:
            self.out.push(_CLOSE)

    def pause_writing(self) -> None:
        # This side's outgoing buffer is full: stop reading from the other side.
        if self.peer is not None and self.peer.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.peer.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed and not self.eof_out:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is None or self.closed or self.eof_out:
            return
        self.eof_out = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._maybe_close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _maybe_close(self) -> None:
        if self.eof_in and self.eof_out:
            self.close()


@dataclass
class _Direction:
    """Chunks from one side to the other, each written at arrival + delay, in order."""

    loop: asyncio.AbstractEventLoop
    delay: float
    dst: _Side
    hold_until: float = 0.0
    queue: deque[tuple[float, object]] = field(default_factory=deque)
    timer: asyncio.TimerHandle | None = None

    def push(self, item: object) -> None:
        now = self.loop.time()
        due = max(now, self.hold_until) + self.delay
        if due <= now and not self.queue:
            self._deliver(item)
            return
        self.queue.append((due, item))
        if self.timer is None:
            self.timer = self.loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now + 0.0002:
            self._deliver(self.queue.popleft()[1])
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _deliver(self, item: object) -> None:
        if item is _EOF:
            self.dst.write_eof()
        elif item is _CLOSE:
            self.dst.close()
        else:
            assert isinstance(item, bytes)
            self.dst.write(item)


class _ClientSide(_Side):
    """The client's socket: reading waits until the upstream connection is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        relay = self.relay.relay
        task = relay.loop.create_task(self.relay.connect_upstream())
        relay.tasks.add(task)
        task.add_done_callback(relay.tasks.discard)


class _Connection:
    """A client connection and its upstream connection."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        loop = relay.loop
        self.client: _Side = _ClientSide(self)
        self.upstream = _Side(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        # Client -> upstream: held for the handshake (1 RTT), then half an RTT per chunk.
        self.client.out = _Direction(loop, relay.half, self.upstream,
                                     hold_until=loop.time() + 2 * relay.half)
        self.upstream.out = _Direction(loop, relay.half, self.client)

    async def connect_upstream(self) -> None:
        host, port = self.relay.upstream
        try:
            await self.relay.loop.create_connection(lambda: self.upstream, host, port)
        except OSError:
            self.client.close()
            return
        self.relay.connections += 1
        if self.client.transport is not None and not self.client.closed:
            self.client.transport.resume_reading()


class Relay:
    """The relay server inside a running event loop.

    Args:
        upstream: (host, port) to forward to.
        rtt_s: round-trip time added (each direction gets half).
    """

    def __init__(self, upstream: tuple[str, int], rtt_s: float) -> None:
        self.upstream = upstream
        self.half = rtt_s / 2
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port."""
        self.server = await self.loop.create_server(
            lambda: _Connection(self).client, host, port, backlog=1024
        )
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening (open connections are dropped when the process exits)."""
        if self.server is not None:
            self.server.close()


async def _serve(args: argparse.Namespace) -> None:
    relay = Relay(host_port(args.upstream, "relay"), args.rtt_ms / 1000)
    port = await relay.listen(loopback(args.listen, "relay"), args.port)
    print(f"port={port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Standard input closing means the harness is gone: stop too.
    reader = asyncio.StreamReader()
    with contextlib.suppress(ValueError, OSError):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            await reader.read()
            stop.set()

        relay.tasks.add(loop.create_task(watch_stdin()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    relay.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.relay``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="host:port to forward to (loopback)")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round-trip time to add")
    parser.add_argument("--listen", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="stop by itself after this long")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


@dataclass
class RelayProcess:
    """``python -m benchmarks.relay`` as a child process; a context manager.

    Attributes:
        upstream: the registry's ``host:port``.
        rtt_ms: round-trip time to add.
        port: the relay's port once started.
        cpu_s: the relay's CPU time (user + system), once stopped.
    """

    upstream: str
    rtt_ms: float
    port: int = 0
    max_seconds: float = 3600.0
    process: subprocess.Popen[bytes] | None = None
    cpu_s: float = 0.0

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: what clients use as the registry name."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> RelayProcess:
        """Start the relay and wait until it listens."""
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.relay", "--upstream", self.upstream,
             "--rtt-ms", str(self.rtt_ms), "--max-seconds", str(self.max_seconds)],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline().decode()
        if not line.startswith("port=") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"relay did not start: {line!r}")
        self.port = int(line.strip().partition("=")[2])
        return self

    def stop(self) -> None:
        """Stop the relay (SIGTERM, then SIGKILL after 5 s); sets :attr:`cpu_s`."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            deadline = time.monotonic() + 5
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            while pid == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = usage.ru_utime + usage.ru_stime
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
