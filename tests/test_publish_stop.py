"""Stopping a bulk publish at the moments between its phases (in memory, no registry)."""

from __future__ import annotations

from typing import Any

from manyfest.engine import Engine
from manyfest.ops import since as since_ops
from manyfest.ops.plan import parse_documents
from manyfest.ops.publish import StopRequest, publish
from manyfest.reference import Reference
from tests.test_atomic import TagDeletingRegistry
from tests.test_engine import HOST, _images, _run


def test_a_stop_while_since_checks_ends_with_the_interrupted_report() -> None:
    """SIGINT while ``--since`` HEADs its candidates: nothing was written, every list is
    "not published" in the report (it was an AttributeError: the check's result unset)."""
    fake = TagDeletingRegistry(refuse_tags=set())
    _images(fake, "same")
    src = "\n".join(f"  - image: {HOST}/app-{a}:1" for a in ("amd64", "arm64"))
    text = (f"image: {HOST}/app:1\nmanifests:\n{src}\n---\n"
            f"image: {HOST}/app:2\nmanifests:\n{src}\n")
    plan = parse_documents(text)
    first = _run(lambda: publish(Engine(fake.client()), plan))
    assert [r.status for r in first.results] == ["created", "created"]
    previous = since_ops.parse_report(first.to_jsonl(), "r.jsonl")
    stop = StopRequest()
    client = fake.client()
    real_head = client.head_manifest

    async def head(ref: Reference, **kw: Any) -> Any:
        stop.stop("SIGINT")  # the signal arrives while the candidates are HEADed
        return await real_head(ref, **kw)

    client.head_manifest = head  # type: ignore[method-assign]
    calls = len(fake.calls)
    report = _run(lambda: publish(Engine(client), plan, stop=stop, since=previous))
    assert report.interrupted == "SIGINT"
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert all(r.error is not None and "interrupted by SIGINT before it was published"
               in r.error.message for r in report.results)
    assert [c for c in fake.calls[calls:] if c[0] not in ("HEAD", "GET")] == []  # no write
