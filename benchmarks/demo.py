"""The README demo: a loopback registry, 800 synthetic images, a 200-list plan, one publish.

1. starts ``docker-registry`` on a free 127.0.0.1 port (storage in ``.demo/``);
2. pushes single-platform images for 4 platforms, one repository per platform as in
   docker's documentation (``demo/app-amd64``, ``demo/app-arm``, ``demo/app-arm64``,
   ``demo/app-win``), 200 versions each, of real shape (:mod:`tests.imagewriter`'s
   default: 6-10 KiB configs, 12 gzip'd tar layers, the lower 9 shared by a platform's
   versions);
3. writes ``.demo/plan.yaml`` (200 lists, manifest-tool's format, 2 extra tags each);
4. runs ``manyfest publish`` on it with live progress;
5. prints where to look. The registry keeps running so you can look; the last line says how
   to stop it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio

from benchmarks import plans
from manyfest.platform import Platform
from tests.imagewriter import push_images
from tests.registry_server import RegistryServer

PLATFORMS = {
    "amd64": Platform("linux", "amd64"),
    "arm": Platform("linux", "arm", "v7"),
    "arm64": Platform("linux", "arm64", "v8"),
    "win": Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",)),
}
VERSIONS = [f"1.{minor}.{patch}" for minor in range(20) for patch in range(10)]


async def seed(host: str) -> None:
    """Push 4 x 200 images of real shape (12 gzip'd tar layers, 6-10 KiB configs)."""
    await push_images(
        host,
        (
            (f"demo/app-{suffix}:{version}", platform, f"demo {version}")
            for version in VERSIONS
            for suffix, platform in PLATFORMS.items()
        ),
        check_blobs=False,  # a new registry: nothing to skip
    )


def write_plan(host: str, path: Path) -> None:
    """One YAML document per list: target, two extra tags, four sources."""
    plans.write_plan(
        path,
        (
            plans.plan_document(
                f"{host}/demo/app:{version}",
                ((f"{host}/demo/app-{suffix}:{version}", p) for suffix, p in PLATFORMS.items()),
                tags=(f"{version.rsplit('.', 1)[0]}-{version.rsplit('.', 1)[1]}", f"v{version}"),
            )
            for version in VERSIONS
        ),
    )


def main() -> int:
    """Run the demo; returns the publish exit status."""
    workdir = Path(".demo").resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir()
    server = RegistryServer(workdir=workdir / "registry")
    server.start()
    host = server.host
    print(f"demo: docker-registry listening on http://{host} (storage {server.workdir})")
    started = time.monotonic()
    anyio.run(seed, host)
    print(f"demo: pushed {len(VERSIONS) * len(PLATFORMS)} single-platform images "
          f"in {time.monotonic() - started:.1f} s")
    plan = workdir / "plan.yaml"
    write_plan(host, plan)
    print(f"demo: wrote {plan} ({len(VERSIONS)} lists), publishing:")
    manyfest = [sys.executable, "-m", "manyfest"]
    status = subprocess.call([*manyfest, "publish", str(plan)])
    assert server.process is not None
    print(
        "\ndemo: done. Look at what was published:\n"
        f"  .venv/bin/manyfest inspect {host}/demo/app:1.0.0\n"
        f"  .venv/bin/manyfest inspect -v {host}/demo/app:v1.19.9\n"
        f"  curl -s http://{host}/v2/demo/app/tags/list\n"
        f"  .venv/bin/manyfest publish {plan}      # again: every list is unchanged\n"
        f"The registry keeps running (pid {server.process.pid}); stop it with: "
        f"kill {server.process.pid}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
