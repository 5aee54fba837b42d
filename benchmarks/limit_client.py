"""The "limit" client: the fewest requests a list needs, as concurrently as possible.

A floor to compare manyfest with, not a tool: plain aiohttp, one session, plain HTTP, no
auth, no retries, no checks beyond status codes, every list started at once under one
semaphore of ``--concurrency`` requests in flight. Per list of 4 single-platform images from
other repositories of the same registry it sends 13 requests plus the mounts:

* GET each source manifest (4);
* GET each config blob, for the platform (4), while mounting every blob of every child into
  the target repository (``POST /blobs/uploads/?mount=&from=``: config + layers). Each
  (target repository, blob) is mounted once per run: lists whose images share base layers
  (the tags of one image) share those mounts;
* PUT each child manifest by digest into the target repository (4);
* PUT the list at its tag (1): docker-style bytes built with manyfest's ``encode_list``
  (the only thing taken from manyfest, so the list digests are the same as manyfest's).

So a run sends exactly ``13 x lists + distinct blobs`` requests (``mounts`` in the summary);
for the benchmark's images see :meth:`benchmarks.harness.Seeded.floor_requests`.
No HEAD of the target (it cannot tell ``unchanged``) and no ping.

Lists may share work, as release plans do (the official-images benchmark,
:mod:`benchmarks.officials`): each (target repository, source) child is resolved, mounted and
PUT once per run however many lists name it, and a list with ``extra_tags`` is PUT once at
its tag, then once per extra tag (the minimum: a list with many tags is one list).

Input: a JSON job file (``{"registry": "127.0.0.1:PORT", "lists": [{"repository": ...,
"tag": ..., "sources": ["repo:tag", ...], "extra_tags": [...]}, ...]}``; ``extra_tags``
optional). Output on stdout: a JSON summary
(``lists``, ``failed``, ``requests``, ``mounts``, ``digests`` by ``repository:tag``, ``errors``).
Exit status 0 when every list was published, 3 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from manyfest.content import Entry, encode_list
from manyfest.platform import Platform

ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class LimitClient:
    """One aiohttp session, one semaphore, a request counter."""

    def __init__(self, session: aiohttp.ClientSession, registry: str, concurrency: int):
        self.session = session
        self.base = f"http://{registry}"
        self.sem = asyncio.Semaphore(concurrency)
        self.requests = 0
        self.mounts: dict[tuple[str, str], asyncio.Task[tuple[int, Any, bytes]]] = {}
        self.children: dict[tuple[str, str], asyncio.Task[Entry]] = {}

    async def shared_child(self, target_repo: str, source: str) -> Entry:
        """:meth:`child`, once per (target repository, source) in the run."""
        key = (target_repo, source)
        if key not in self.children:
            self.children[key] = asyncio.ensure_future(self.child(target_repo, source))
        return await asyncio.shield(self.children[key])

    async def call(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        """One request; returns (status, headers, body); raises on a status not in ``ok``."""
        async with self.sem:
            self.requests += 1
            async with self.session.request(
                method, self.base + path, headers=headers, data=data, params=params
            ) as resp:
                body = await resp.read()
                if resp.status not in ok:
                    raise RuntimeError(f"{method} {path}: {resp.status} {body[:200]!r}")
                return resp.status, resp.headers, body

    async def child(self, target_repo: str, source: str) -> Entry:
        """Resolve one source, mount its blobs, PUT it by digest; returns its list entry."""
        repo, _, tag = source.rpartition(":")
        _, headers, raw = await self.call(
            "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}
        )
        doc = json.loads(raw)
        media_type = doc.get("mediaType") or headers.get("Content-Type", "")
        digest = headers["Docker-Content-Digest"]
        blobs = [doc["config"]["digest"]] + [layer["digest"] for layer in doc["layers"]]

        async def mount(blob: str) -> None:
            key = (target_repo, blob)
            if key not in self.mounts:  # once per (target repository, blob) in the run
                self.mounts[key] = asyncio.ensure_future(self.call(
                    "POST",
                    f"/v2/{target_repo}/blobs/uploads/",
                    params={"mount": blob, "from": repo},
                    ok=(201,),
                ))
            await asyncio.shield(self.mounts[key])

        results = await asyncio.gather(
            self.call("GET", f"/v2/{repo}/blobs/{blobs[0]}"), *(mount(b) for b in blobs)
        )
        config = json.loads(results[0][2])
        platform = Platform(
            config.get("os", ""),
            config.get("architecture", ""),
            config.get("variant", ""),
            config.get("os.version", ""),
            tuple(config.get("os.features") or ()),
        )
        await self.call(
            "PUT",
            f"/v2/{target_repo}/manifests/{digest}",
            headers={"Content-Type": media_type},
            data=raw,
            ok=(201,),
        )
        return Entry(media_type, len(raw), digest, platform)

    async def publish(self, item: dict[str, Any]) -> str:
        """Publish one list; returns its digest."""
        repo = item["repository"]
        entries = await asyncio.gather(*(self.shared_child(repo, s) for s in item["sources"]))
        manifest = encode_list(list(entries))

        async def put(tag: str) -> None:
            await self.call(
                "PUT",
                f"/v2/{repo}/manifests/{tag}",
                headers={"Content-Type": manifest.media_type},
                data=manifest.raw,
                ok=(201,),
            )

        await put(item["tag"])
        await asyncio.gather(*(put(t) for t in item.get("extra_tags", ())))
        return manifest.digest


async def run(job: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """Publish every list of the job at once; returns the summary."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        client = LimitClient(session, job["registry"], concurrency)
        lists = job["lists"]
        outcomes = await asyncio.gather(
            *(client.publish(item) for item in lists), return_exceptions=True
        )
    digests: dict[str, str] = {}
    errors: list[str] = []
    for item, outcome in zip(lists, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            errors.append(f"{item['repository']}:{item['tag']}: {outcome}")
        else:
            digests[f"{item['repository']}:{item['tag']}"] = outcome
    return {
        "lists": len(lists),
        "failed": len(errors),
        "requests": client.requests,
        "mounts": len(client.mounts),
        "digests": digests,
        "errors": errors[:10],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.limit_client JOB.json``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.limit_client")
    parser.add_argument("job", type=Path, help="JSON job file")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(json.loads(args.job.read_text()), args.concurrency))
    sys.stdout.write(json.dumps(summary) + "\n")
    return 3 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
