"""Helpers for the interrupt tests: a CLI process watched line by line, registry checks.

Every wait is for a STATE (a line on stderr, a request held at the proxy), never a sleep;
the timeouts are hang guards only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from manyfest import reference
from manyfest.cache import FactCache
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from tests.helpers import PLATFORMS, platform_suffix

HANG = 180.0
"""Seconds before a wait gives up: a guard against a hung test, not a timing assumption."""


class Run:
    """``python [-X importtime] -m manyfest ARGS`` with stderr read line by line."""

    def __init__(self, *args: str, importtime: bool = False,
                 env: dict[str, str] | None = None, argv: list[str] | None = None) -> None:
        cmd = argv if argv is not None else [
            sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "manyfest",
        ]
        full_env = dict(os.environ, COLUMNS="200", **(env or {}))
        self.proc = subprocess.Popen(
            [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=full_env,
        )
        self.lines: list[str] = []
        self.stdout = ""
        self._cond = threading.Condition()
        self._eof = False
        self._threads = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def wait_line(self, match: Callable[[str], bool], what: str) -> str:
        """Block until a stderr line satisfies ``match``; fail if the process ends first."""
        with self._cond:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                seen = len(self.lines)
                if self._eof:
                    raise AssertionError(
                        f"process ended before {what}: {self.proc.wait()}\n"
                        + "\n".join(self.lines[-20:])
                    )
                if not self._cond.wait(HANG):
                    raise AssertionError(f"no {what} on stderr")

    def wait_import(self, module: str) -> None:
        """Block until ``-X importtime`` reports ``module`` imported."""
        pattern = re.compile(rf"^import time:.*\|\s+{re.escape(module)}$")
        self.wait_line(lambda line: bool(pattern.match(line)), f"import of {module}")

    def wait_progress(self, k: int) -> str:
        """Block until the k-th ``[k/N]`` progress line (one per finished list)."""
        return self.wait_line(lambda line: line.startswith(f"[{k}/"), f"progress line {k}")

    def send(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        self.proc.send_signal(signum)

    def finish(self) -> tuple[int, str, list[str]]:
        """Wait for the end: (exit status, stdout, stderr lines)."""
        code = self.proc.wait(HANG)
        for thread in self._threads:
            thread.join(HANG)
        self._close()
        return code, self.stdout, self.lines

    def _close(self) -> None:
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def kill(self) -> None:
        """SIGKILL (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(HANG)
        for thread in self._threads:
            thread.join(HANG)
        self._close()


def expect_code(signum: int) -> int:
    """130 for SIGINT, 143 for SIGTERM."""
    return {signal.SIGINT: 130, signal.SIGTERM: 143}[signal.Signals(signum)]


def assert_one_line(lines: list[str], signum: int) -> str:
    """The last stderr line is the one interruption line; no traceback anywhere."""
    name = signal.Signals(signum).name
    assert lines, "nothing on stderr"
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    assert lines[-1].startswith(f"interrupted by {name}: "), "\n".join(lines[-5:])
    assert sum(line.startswith("interrupted by ") for line in lines) == 1, "\n".join(lines)
    return lines[-1]


def plan_text(host: str, src: str, target: str, n: int) -> str:
    """``n`` lists ``<target>/app:1.<i>`` (+ tags v1.<i>, latest-<i>) of 4 platforms each."""
    docs = []
    for i in range(n):
        lines = [f"image: {host}/{target}/app:1.{i}", f'tags: ["v1.{i}", latest-{i}]',
                 "manifests:"]
        for p in PLATFORMS:
            lines.append(f"  - image: {host}/{src}/app-{platform_suffix(p)}:1.{i}")
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


def sources(src: str, n: int) -> list[tuple[str, Any, str]]:
    """The images :func:`plan_text` names, for :func:`tests.helpers.seed`."""
    return [(f"{src}/app-{platform_suffix(p)}:1.{i}", p, f"{src}-{i}")
            for i in range(n) for p in PLATFORMS]


def check_reports(
    stdout: str, report: Path, n: int, signum: int, line: str
) -> list[dict[str, Any]]:
    """--json and --report are complete: n lists, published + not published = n."""
    name = signal.Signals(signum).name
    doc = json.loads(stdout)
    results = doc["results"]
    assert len(results) == n
    rows = [json.loads(text) for text in report.read_text().splitlines()]
    assert [r["target"] for r in rows] == [r["target"] for r in results]
    assert [r["status"] for r in rows] == [r["status"] for r in results]
    published = [r for r in results if r["status"] in ("created", "updated", "unchanged")]
    stopped = [r for r in results if r["status"] == "failed"]
    assert len(published) + len(stopped) == n
    for r in stopped:
        assert r["error"].startswith(f"not published: interrupted by {name}"), r
    for r in published:
        assert r["digest"].startswith("sha256:"), r
        assert r["error"] is None, r
    summary = doc["summary"]
    # None only when the signal landed after the run had ended (nothing left to stop).
    assert summary["interrupted"] == name or (summary["interrupted"] is None and not stopped)
    assert summary["not_published"] == len(stopped)
    assert summary["lists"] == n
    assert line.startswith(f"interrupted by {name}: {len(published)} of {n} lists published")
    assert f", {len(stopped)} not published" in line
    assert line.endswith("; re-run to finish" if stopped else
                         "; the run had finished before the signal"), line
    return list(results)


def check_cache(root: Path) -> int:
    """Every cache file is whole and valid (no temporary file left); returns files seen."""
    if not root.exists():
        return 0
    cache = FactCache(root)
    seen = 0
    for path in root.rglob("*"):
        if path.is_dir():
            continue
        seen += 1
        assert not path.name.endswith(".tmp"), path
        rel = path.relative_to(root).parts
        if rel[0] == "manifests":
            assert cache.manifest(f"{rel[1]}:{rel[2]}") is not None, path
        else:
            assert rel[0] == "tags", path
            assert isinstance(json.loads(path.read_bytes()), dict), path
    return seen


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the local store): path → bytes."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class TagChecker:
    """Checks tags on the real registry with manyfest's RegistryClient over a Transport.

    A tag that exists must point at a complete list: every child present in the list's
    repository with every blob it names. Verified (repository, digest) pairs are
    remembered across calls.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._lists: set[tuple[str, str]] = set()

    def tags(self, refs: list[str]) -> dict[str, str]:
        """Each reference's digest now ('' when the tag does not exist); asserts every
        existing tag points at a complete list."""
        return anyio.run(self._tags, refs)

    async def _tags(self, refs: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        async with Transport(Settings(concurrency=32)) as transport:
            client = RegistryClient(transport)
            limiter = anyio.Semaphore(32)

            async def one(text: str) -> None:
                ref = reference.parse(text)
                async with limiter:
                    head = await client.head_manifest(ref)
                found[text] = head.digest if head else ""
                if head is None or (ref.name, head.digest) in self._lists:
                    return
                listed = await client.get_manifest(ref.with_digest(head.digest))
                assert listed.is_index, text
                for entry in listed.index().manifests:
                    child = await client.get_manifest(ref.with_digest(entry.digest))
                    for blob in child.blobs():
                        async with limiter:
                            present = await client.blob_exists(ref, blob.digest)
                        assert present, f"{text} -> {head.digest}: blob {blob.digest} missing"
                self._lists.add((ref.name, head.digest))

            async with anyio.create_task_group() as tg:
                for text in refs:
                    tg.start_soon(one, text)
        return found


def list_tags(host: str, target: str, n: int) -> list[list[str]]:
    """The three tags of each of the n lists of :func:`plan_text`."""
    return [[f"{host}/{target}/app:{tag}" for tag in (f"1.{i}", f"v1.{i}", f"latest-{i}")]
            for i in range(n)]
