"""Helpers for tests: seeding images, running the CLIs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from manyfest.platform import Platform
from manyfest.transport import Settings
from tests.imagewriter import (
    DEFAULT_SHAPE,
    Image,
    Shape,
    build_images,
    distinct_blobs,
    push_built,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = (
    Platform("linux", "amd64"),
    Platform("linux", "arm", "v7"),
    Platform("linux", "arm64", "v8"),
    Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",)),
)
"""The four platforms of the docker walkthrough."""
SUFFIX = {"amd64": "amd64", "arm": "arm", "arm64": "arm64"}


def platform_suffix(p: Platform) -> str:
    """The repository suffix used for a platform (``app-amd64``, ``app-win``...)."""
    return "win" if p.os == "windows" else SUFFIX[p.architecture]


async def seed_images(
    host: str,
    names: list[tuple[str, Platform, str]],
    *,
    oci: bool = False,
    settings: Settings | None = None,
    shape: Shape = DEFAULT_SHAPE,
    check_blobs: bool = True,
) -> dict[str, str]:
    """Push synthetic images: ``(repository:tag, platform, seed)`` → {ref: digest}."""
    images = build_images(names, oci=oci, shape=shape)
    return await push_built(host, images, settings=settings, check_blobs=check_blobs)


def seed(host: str, names: list[tuple[str, Platform, str]], **kw: object) -> dict[str, str]:
    """Synchronous :func:`seed_images`."""
    return anyio.run(lambda: seed_images(host, names, **kw))  # type: ignore[arg-type]


def seed_built(host: str, names: list[tuple[str, Platform, str]], *, oci: bool = False,
               shape: Shape = DEFAULT_SHAPE, settings: Settings | None = None,
               check_blobs: bool = True) -> dict[str, Image]:
    """Build and push images; returns ``{repository:tag: Image}`` (to compute expectations)."""
    images = build_images(names, oci=oci, shape=shape)
    anyio.run(lambda: push_built(host, images, settings=settings, check_blobs=check_blobs))
    return images


def walkthrough_names(ns: str, tag: str = "1", seed_text: str = "") -> list[
        tuple[str, Platform, str]]:
    """``(<ns>/app-<suffix>:<tag>, platform, seed)`` of the 4 walkthrough images."""
    return [(f"{ns}/app-{platform_suffix(p)}:{tag}", p, seed_text or ns) for p in PLATFORMS]


REFERRERS_PROBE = 1
"""Requests a run spends probing the referrers API: one GET per registry. Distribution 2.8's
router answers it 404 without an access-log line, so :meth:`RegistryServer.request_count`
does not see it (the transport's count does)."""


def referrers_lookups(source_repositories: int) -> int:
    """Requests the default ``--referrers copy`` adds to a run whose children come from
    ``source_repositories`` other repositories of one registry without the referrers API:
    the probe, then one tags/list per source repository (its fallback and cosign tags are
    looked up in that list; none exist here, so nothing more is read)."""
    return REFERRERS_PROBE + source_repositories


def walkthrough_blobs(ns: str, tag: str = "1", seed_text: str = "") -> int:
    """How many blobs (configs + layers, each once) the 4 walkthrough images have: the mounts
    a list of them needs in a new repository."""
    return len(distinct_blobs(build_images(walkthrough_names(ns, tag, seed_text)).values()))


def seed_walkthrough(host: str, ns: str, tag: str = "1", seed_text: str = "") -> list[str]:
    """Push the 4 walkthrough images ``<ns>/app-<suffix>:<tag>``; returns their references."""
    names = walkthrough_names(ns, tag, seed_text)
    seed(host, names)
    return [f"{host}/{name}" for name, _, _ in names]


def manyfest(*args: str, check: bool = False, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the manyfest CLI in a subprocess (``python -m manyfest``)."""
    full_env = dict(os.environ)
    full_env.pop("COLUMNS", None)
    full_env["COLUMNS"] = "200"
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "manyfest", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"manyfest {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def docker_cli() -> str | None:
    """Path of the docker CLI, or None."""
    return shutil.which("docker")


def docker(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI (no daemon needed for `docker manifest`)."""
    binary = docker_cli()
    assert binary is not None
    proc = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


requires_docker = pytest.mark.skipif(
    docker_cli() is None, reason="the docker CLI is not installed on this machine"
)


def head_digest(ref: str) -> str:
    """The digest ``ref`` points at in the registry, by a HEAD straight to it ('' when it
    does not exist)."""
    from manyfest import reference
    from manyfest.registry import RegistryClient
    from manyfest.transport import Transport

    async def head() -> str:
        async with Transport(Settings()) as transport:
            found = await RegistryClient(transport).head_manifest(reference.parse(ref))
            return found.digest if found is not None else ""

    return anyio.run(head)
