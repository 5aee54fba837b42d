"""Peak RSS of manyfest copying one big layer streaming (a registry answering 202 to mounts).

    python -m benchmarks.big_layer [--big-layer-mib 1024]

Starts a loopback ``docker-registry``, pushes an image whose layer is ``--big-layer-mib`` MiB
(generated and uploaded chunk by chunk, see ``tests/bigblob.py``), puts the tests' quirk proxy
in front of it with every mount answered 202 (so the blob must be copied: GET from the source
repository streamed into the upload PUT of the target), runs ``manyfest publish`` of a list of
that image into another repository, checks the copied blob's digest and prints the manyfest
process's peak RSS (``os.wait4``) and wall time. Nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from tests.bigblob import MIB, blob_digest, push_big_image
from tests.quirk_proxy import QuirkProxy, mount_answers_202
from tests.registry_server import RegistryServer


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; prints one JSON object. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-layer-mib", type=int, default=1024,
                        help="size of the layer copied, in MiB (default 1024)")
    args = parser.parse_args(argv)
    size = args.big_layer_mib * MIB
    with tempfile.TemporaryDirectory(prefix="manyfest-big-") as tmp:
        work = Path(tmp)
        storage = Path("/dev/shm") if size < 2048 * MIB and Path("/dev/shm").is_dir() else work
        with tempfile.TemporaryDirectory(dir=storage, prefix="manyfest-big-reg-") as regdir, \
                RegistryServer(workdir=Path(regdir)) as registry:
            image = anyio.run(lambda: push_big_image(registry.host, "big/src", "1", "bench", size))
            proxy = QuirkProxy(registry.host, streaming=True).start()
            try:
                proxy.before.append(mount_answers_202(proxy))
                plan = work / "plan.yaml"
                plan.write_text(f"image: {proxy.host}/big/dst:1\n"
                                f"manifests:\n  - image: {proxy.host}/big/src:1\n")
                env = dict(os.environ, MANYFEST_CACHE_DIR=str(work / "cache"))
                started = time.monotonic()
                with (work / "out").open("wb") as out, (work / "err").open("wb") as err:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "manyfest", "publish", "--json", str(plan)],
                        stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                    )
                _, status, usage = os.wait4(proc.pid, 0)
                wall = time.monotonic() - started
            finally:
                proxy.stop()
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                print((work / "err").read_text(), file=sys.stderr)
                return 1
            [result] = json.loads((work / "out").read_text())["results"]
            dgst, copied = anyio.run(lambda: blob_digest(registry.host, "big/dst",
                                                         image.layer_digest))
            ok = dgst == image.layer_digest and copied == size
            print(json.dumps({
                "layer_mib": args.big_layer_mib,
                "status": result["status"],
                "digest_ok": ok,
                "wall_s": round(wall, 2),
                "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            }))
            return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
