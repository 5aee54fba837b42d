"""Blobs copied streaming when a mount answers 202: memory bounded, digest checked."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests import measure
from tests.bigblob import MIB, blob_digest, blob_status, push_big_image
from tests.helpers import manyfest
from tests.quirk_proxy import QuirkProxy, corrupt_blob, mount_answers_202, slow_upload
from tests.registry_server import RegistryServer

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

RSS_LIMIT_MB = 150


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[QuirkProxy]:
    p = QuirkProxy(registry.host, streaming=True).start()
    yield p
    p.stop()


def run_measured(*args: str, cwd: Path) -> tuple[int, str, str, int]:
    """Run ``python -m manyfest ARGS``: (exit code, stdout, stderr, peak RSS in KiB).

    The peak RSS is the child's own: Linux carries a forking parent's resident set into the
    child's ``ru_maxrss`` across exec, and pytest grows to hundreds of MB over the suite, so
    the child is started by a small launcher
    (:func:`tests.measure.measure`), whose own few MB are all it inherits.
    """
    measured = measure.measure([sys.executable, "-m", "manyfest", *args],
                               env=dict(os.environ), workdir=cwd / "run")
    err = (cwd / "run" / "stderr").read_text()
    return (measured.exit_code, measured.stdout.decode(), err,
            int(measured.rss_mb * 1024))


def _plan(tmp_path: Path, host: str, ns: str) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"image: {host}/{ns}/app:1\nmanifests:\n  - image: {host}/{ns}/big:1\n")
    return plan


def test_300_mib_layer_is_copied_streaming(registry: RegistryServer, proxy: QuirkProxy,
                                           ns: str, tmp_path: Path) -> None:
    image = anyio.run(lambda: push_big_image(registry.host, f"{ns}/big", "1", ns, 300 * MIB))
    proxy.before.append(mount_answers_202(proxy))
    code, stdout, stderr, maxrss_kib = run_measured(
        "publish", "--json", str(_plan(tmp_path, proxy.host, ns)), cwd=tmp_path
    )
    assert code == 0, stderr
    [result] = json.loads(stdout)["results"]
    assert result["status"] == "created"
    # 13 blobs (config, 11 small layers, the big one): every mount refused, every blob copied.
    assert proxy.count("POST", "mount=") == 13
    assert proxy.count("GET", f"/v2/{ns}/big/blobs/{image.layer_digest}") == 1
    dgst, size = anyio.run(lambda: blob_digest(registry.host, f"{ns}/app", image.layer_digest))
    assert (dgst, size) == (image.layer_digest, 300 * MIB)
    print(f"manyfest peak RSS copying a 300 MiB layer: {maxrss_kib / 1024:.0f} MB")
    assert maxrss_kib / 1024 < RSS_LIMIT_MB, (
        f"peak RSS {maxrss_kib / 1024:.0f} MB; retries {result['retries']}, "
        f"{result['duration_s']} s; {stderr}")


def test_corrupt_source_blob_fails_the_list(registry: RegistryServer, proxy: QuirkProxy,
                                            ns: str, tmp_path: Path) -> None:
    image = anyio.run(lambda: push_big_image(registry.host, f"{ns}/big", "1", ns, 8 * MIB))
    proxy.before.append(corrupt_blob(proxy, image.layer_digest))
    proxy.before.append(mount_answers_202(proxy))
    code, _, stderr, _ = run_measured(
        "publish", str(_plan(tmp_path, proxy.host, ns)), cwd=tmp_path
    )
    assert code == 3, stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    [line] = [ln for ln in lines if "content has digest" in ln]
    assert f"get blob {proxy.host}/{ns}/big@{image.layer_digest}: content has digest " \
        "sha256:" in line
    assert f", expected {image.layer_digest}" in line
    assert f"{proxy.host}/{ns}/app:1" in line  # the list that failed
    assert proxy.count("GET", f"/blobs/{image.layer_digest}") == 1  # not retried
    status, _ = anyio.run(lambda: blob_status(registry.host, f"{ns}/app", image.layer_digest))
    assert status == 404
    # manyfest withheld the last chunk: the registry never got a whole upload to judge (it
    # would have answered 400 DIGEST_INVALID), so no upload PUT was answered at all.
    hex_digest = image.layer_digest.partition(":")[2]
    uploads = [key for key in proxy.answered if key.startswith("PUT ") and hex_digest in key]
    assert uploads == [], uploads
    # The tag was never written.
    assert proxy.count("PUT", f"/v2/{ns}/app/manifests/1") == 0


def test_a_copy_may_take_longer_than_read_timeout(registry: RegistryServer, proxy: QuirkProxy,
                                                  ns: str, tmp_path: Path) -> None:
    """read_timeout bounds each read of a streamed copy, not the whole copy (Settings)."""
    image = anyio.run(lambda: push_big_image(registry.host, f"{ns}/big", "1", ns, 16 * MIB))
    # 256 pieces of 64 KiB, 10 ms each: the upload takes at least 2.56 s, more than the 1 s
    # read_timeout below, however fast the machine; no single read waits near 1 s.
    proxy.before.append(slow_upload(proxy, image.layer_digest, 0.01))
    proxy.before.append(mount_answers_202(proxy))
    config = tmp_path / "manyfest.yaml"
    config.write_text("read_timeout: 1\nerror_retry_deadline: 1\n")
    proc = manyfest("publish", "--json", str(_plan(tmp_path, proxy.host, ns)),
                    env={"MANYFEST_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert (result["status"], result["retries"]) == ("created", 0)
    hex_digest = image.layer_digest.partition(":")[2]
    assert [key.rsplit(" ", 1)[1] for key in proxy.answered
            if key.startswith("PUT ") and hex_digest in key] == ["201"]
    dgst, size = anyio.run(lambda: blob_digest(registry.host, f"{ns}/app", image.layer_digest))
    assert (dgst, size) == (image.layer_digest, 16 * MIB)
