"""The floor of ``manyfest inspect``: import aiohttp and typer, GET one manifest, print it.

    python -m benchmarks.inspect_floor HOST/REPOSITORY:TAG

What any Python CLI on this stack pays for one inspect: the interpreter, the two imports and
the request over plain HTTP (no ping, no auth, no retries, no checks).
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import typer

ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


async def fetch(ref: str) -> bytes:
    """The manifest bytes of ``ref`` (``host/repository:tag``) over plain HTTP."""
    host, _, rest = ref.partition("/")
    repository, _, tag = rest.rpartition(":")
    async with aiohttp.ClientSession() as session, session.get(
        f"http://{host}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}
    ) as response:
        response.raise_for_status()
        return await response.read()


def main() -> None:
    """Print the manifest named by ``sys.argv[1]``."""
    assert typer  # imported for its cost: the floor is "import aiohttp, typer" + the GET
    sys.stdout.buffer.write(asyncio.run(fetch(sys.argv[1])))


if __name__ == "__main__":
    main()
