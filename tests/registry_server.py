"""Start Debian's ``docker-registry`` (CNCF Distribution v2.8) on a free loopback port.

Used by the tests (session fixture), the README demo and the benchmarks. The registry logs at
level ``info``: one ``response completed`` line per request, which :meth:`request_count`
counts to measure requests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

BINARY_CANDIDATES = ("docker-registry", "registry")


def find_binary() -> str | None:
    """Path of the registry binary, or None when it is not installed."""
    for name in BINARY_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on ``address`` (a loopback IPv4 address) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@dataclass
class RegistryServer:
    """A running registry; use as a context manager or call start()/stop().

    Attributes:
        workdir: directory for storage, config and log.
        tls: (certificate path, key path) to serve HTTPS.
        htpasswd: path of an htpasswd file (bcrypt entries) for basic auth.
        token: dict with realm, service, issuer, rootcertbundle for token auth.
        client_cas: CA certificate paths (``http.tls.clientcas``): with ``tls``, clients must
            present a certificate issued by one of them.
        address: the loopback IPv4 address to listen on (``127.0.0.1``; any of 127.0.0.0/8).
        port: the port to listen on (0: a free one; 80 needs root).
        drain_timeout: seconds :meth:`stop` lets requests in flight finish (``http.
            draintimeout``: on SIGTERM the registry stops accepting, then drains), as an
            orderly restart does; 0 (default) exits at once, which can leave a write half done
            in its storage.
    """

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="manyfest-reg-")))
    tls: tuple[Path, Path] | None = None
    htpasswd: Path | None = None
    token: dict[str, str] | None = None
    client_cas: tuple[Path, ...] = ()
    address: str = "127.0.0.1"
    drain_timeout: float = 0
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _counted_bytes: int = field(default=0, repr=False)
    _counted: int = field(default=0, repr=False)

    @property
    def host(self) -> str:
        """``<address>:<port>`` (``127.0.0.1:<port>``): the registry as written in references."""
        return f"{self.address}:{self.port}"

    @property
    def storage_dir(self) -> Path:
        """The filesystem storage's root directory (``storage.filesystem.rootdirectory``):
        ``<workdir>/storage``. A server made on a ``workdir`` whose storage was written
        beforehand (:mod:`tests.registry_storage`) serves what is there once started."""
        return self.workdir / "storage"

    @property
    def log_path(self) -> Path:
        """The registry's log file."""
        return self.workdir / "registry.log"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage_dir}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.address}:{self.port}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self.drain_timeout:
            lines.append(f"  draintimeout: {self.drain_timeout:g}s")
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
            if self.client_cas:
                lines += ["    clientcas:"] + [f"      - {path}" for path in self.client_cas]
        if self.htpasswd:
            lines += ["auth:", "  htpasswd:", "    realm: manyfest-test"]
            lines += [f"    path: {self.htpasswd}"]
        elif self.token:
            lines += ["auth:", "  token:"] + [f"    {k}: {v}" for k, v in self.token.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> RegistryServer:
        """Write the config, start the registry, wait until ``/v2/`` answers.

        Raises:
            RuntimeError: the binary is missing or the registry did not come up.
        """
        binary = find_binary()
        if binary is None:
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.address)
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        scheme = "https" if self.tls else "http"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    pass
                if scheme == "http":
                    with contextlib.suppress(urllib.error.HTTPError):
                        urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry did not start on {self.host}")

    def stop(self) -> None:
        """Stop the registry process."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10 + self.drain_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def request_count(self, settle_s: float = 0.2) -> int:
        """Requests served so far (``response completed`` lines in the log).

        The registry writes a line just after it answers, so the count is read until it has
        not changed for ``settle_s`` seconds.
        """
        count = self._count()
        stable_since = time.monotonic()
        while time.monotonic() - stable_since < settle_s:
            time.sleep(0.02)
            now = self._count()
            if now != count:
                count, stable_since = now, time.monotonic()
        return count

    def _count(self) -> int:
        # Incremental: only the complete lines written since the last call are read.
        try:
            with self.log_path.open("rb") as fh:
                if fh.seek(0, os.SEEK_END) < self._counted_bytes:
                    self._counted_bytes = self._counted = 0  # the log was replaced
                fh.seek(self._counted_bytes)
                data = fh.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        self._counted += data.count(b"response completed", 0, end)
        self._counted_bytes += end
        return self._counted

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
