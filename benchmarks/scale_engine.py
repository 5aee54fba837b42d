"""The publish engine alone, without I/O: CPU per list of one run against an in-memory
registry (``tests.test_engine.FakeRegistry``), for :mod:`benchmarks.scale`.

    python -m benchmarks.scale_engine LISTS [--lists-per-source 20]

Prints one JSON object: ``lists``, ``cpu_s`` (``time.process_time`` of
:func:`manyfest.ops.publish.publish` alone: plan already parsed, images already seeded) and
``gc_s`` (time spent in the cyclic garbage collector during it). The plan's shape is the
benchmark's (N / 20 source sets of 2 real-shape images, one target repository), with the CLI's
gc freeze for plans of 1,000 lists or more when the code under test has it. Uses only APIs
older versions have too, so ``--compare-src`` can run it on them.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import anyio

from manyfest.content import Manifest
from manyfest.engine import Engine
from manyfest.ops import plan as plans
from manyfest.ops.publish import publish
from manyfest.platform import Platform
from manyfest.reference import Reference
from tests.imagewriter import build_image
from tests.test_engine import HOST, FakeRegistry
from tests.test_scale import FakeTransport, NoCalls

PLATFORMS = (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))


class _Registry(FakeRegistry):
    """The fake; list PUTs by tag checked, then only counted."""

    def __init__(self) -> None:
        super().__init__(calls=NoCalls())
        self.transport = FakeTransport()
        self.lists_put = 0

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        if not (manifest.is_index and ref.tag):
            return await super().put_manifest(ref, manifest, built=built)
        present = self.manifests.get(ref.repository, {})
        assert all(d.digest in present for d in manifest.index().manifests)
        self.lists_put += 1
        return manifest.digest


def run(lists: int, per_source: int) -> dict[str, Any]:
    """Seed, parse, then publish ``lists`` lists and measure the publish."""
    sets = max(1, lists // per_source)
    fake = _Registry()
    for s in range(sets):
        for p in PLATFORMS:
            fake.add_image(f"src-{p.architecture}", f"s{s}", build_image(p, f"scale {s}"))
    text = "\n---\n".join(
        "\n".join([f"image: {HOST}/scale/app:v{i}", "manifests:",
                   *(f"  - image: {HOST}/src-{p.architecture}:s{i % sets}" for p in PLATFORMS)])
        for i in range(lists)
    ) + "\n"
    plan = plans.parse_documents(text)
    try:
        from manyfest.cli.publish import _freeze_long_lived  # type: ignore[attr-defined]
    except ImportError:  # older code: no freeze
        pass
    else:
        _freeze_long_lived(lists)
    spent = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            spent[1] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - spent[1]

    gc.callbacks.append(on_gc)
    started = time.process_time()
    report = anyio.run(publish, Engine(fake.client()), plan)
    cpu = time.process_time() - started
    gc.callbacks.remove(on_gc)
    created = sum(1 for r in report.results if r.status == "created")
    return {"lists": lists, "cpu_s": round(cpu, 4), "gc_s": round(spent[0], 4),
            "created": created, "lists_put": fake.lists_put}


def main() -> None:
    """``python -m benchmarks.scale_engine LISTS``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale_engine")
    p.add_argument("lists", type=int)
    p.add_argument("--lists-per-source", type=int, default=20)
    args = p.parse_args()
    print(json.dumps(run(args.lists, args.lists_per_source)))


if __name__ == "__main__":
    main()
