"""The embedded registry: Debian's `docker-registry` on a free 127.0.0.1 port.

`run --local` starts one for a run that names no `destination` and pushes there;
`imagegate registry serve` runs the same registry in the foreground so what a run
pushed can be pulled afterwards (the data outlives the process). It never uses the
shipped `/etc/docker/registry/config.yml`, which turns on htpasswd auth (see
shared/research/machine.md section 2): it writes its own config with no auth, loopback
only, and its data under the user's cache directory
(`$XDG_CACHE_HOME/imagegate/registry`, else `~/.cache/imagegate/registry`).

    with EmbeddedRegistry.start() as reg:   # ready: /v2/ answered 200
        reg.host                            # "127.0.0.1:41234", for image references
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, Field

from workflows.cache import cache_dir
from workflows.errors import LocalRunError

__all__ = ["EmbeddedRegistry", "RegistryInfo", "cache_dir", "default_data_dir", "free_port", "serve"]

BINARY = "docker-registry"
LOOPBACK = "127.0.0.1"
# The registry answers /v2/ within ~20 ms of start here (machine.md, row 2); this bounds a
# registry that never comes up (a port taken between our probe and its bind, a bad config).
_READY_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0


class RegistryInfo(BaseModel):
    """A running embedded registry: where it listens and where it keeps its data."""

    host: str = Field(description="host:port for image references, e.g. 127.0.0.1:41234.")
    url: str = Field(description="Base URL of the registry API, e.g. http://127.0.0.1:41234.")
    data_dir: Path = Field(description="The registry's storage root (blobs and manifests).")
    config: Path = Field(description="The config file the registry was started with (removed on stop).")
    log: Path = Field(description="The registry's own log (removed on stop).")
    pid: int


def default_data_dir() -> Path:
    """Where the embedded registry keeps its data unless told otherwise."""
    return cache_dir() / "registry"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _config_text(addr: str, data_dir: Path) -> str:
    # JSON is YAML; writing it with json.dumps quotes paths with spaces correctly.
    config = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "cache": {"blobdescriptor": "inmemory"},
            "filesystem": {"rootdirectory": str(data_dir)},
            "delete": {"enabled": True},
        },
        "http": {"addr": addr, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    return json.dumps(config, indent=2) + "\n"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class EmbeddedRegistry:
    """A `docker-registry serve` process this object started and will stop."""

    def __init__(self, info: RegistryInfo, process: subprocess.Popen[bytes]) -> None:
        self.info = info
        self._process = process

    @property
    def host(self) -> str:
        """host:port, what image references name."""
        return self.info.host

    @property
    def url(self) -> str:
        """Base URL of the registry API."""
        return self.info.url

    @classmethod
    def start(cls, port: int | None = None, data_dir: Path | None = None) -> EmbeddedRegistry:
        """Start the registry and return once `/v2/` answers 200.

        Args:
            port: the 127.0.0.1 port to listen on; a free one when None.
            data_dir: the storage root; `default_data_dir()` when None.

        Raises:
            LocalRunError: docker-registry is not installed, or it exited or did not answer.
        """
        binary = shutil.which(BINARY)
        if binary is None:
            raise LocalRunError(
                f"{BINARY} is not installed, so there is no registry to push to",
                hint="run scripts/setup (it installs Debian's docker-registry), or pass -p destination=HOST/PATH:TAG",
            )
        data_dir = (data_dir or default_data_dir()).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        host = f"{LOOPBACK}:{port}"
        url = f"http://{host}"
        if _answers(url):
            raise LocalRunError(
                f"something already answers on {host}", hint="choose another --port, or omit it for a free one"
            )
        # Config and log live only as long as the process: the data dir is the registry's alone,
        # and several registries (a run's and a `registry serve`) may share it.
        state = Path(tempfile.mkdtemp(prefix="imagegate-registry-"))
        config = state / "config.yml"
        config.write_text(_config_text(host, data_dir))
        log = state / "registry.log"
        env = {**os.environ, "REGISTRY_HTTP_SECRET": os.urandom(16).hex()}  # silences the random-secret warning
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it in order
            )
        info = RegistryInfo(host=host, url=url, data_dir=data_dir, config=config, log=log, pid=process.pid)
        registry = cls(info, process)
        try:
            registry._wait_ready()
        except LocalRunError as exc:
            exc.hint = f"the registry's log ends: {registry.log_tail()}"
            registry.stop()
            raise
        return registry

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalRunError(
                    f"{BINARY} exited with status {self._process.returncode} before answering on {self.host}"
                )
            if _answers(self.url):
                return
            time.sleep(0.02)
        raise LocalRunError(f"{BINARY} did not answer {self.url}/v2/ within {_READY_TIMEOUT:.0f}s")

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the registry's log, for error messages."""
        try:
            text = self.info.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty)"

    def running(self) -> bool:
        """True while the process lives."""
        return self._process.poll() is None

    def wait(self) -> int:
        """Block until the registry exits; its exit status."""
        return self._process.wait()

    def terminate(self) -> None:
        """Ask the registry to exit (SIGTERM) without waiting; safe in a signal handler."""
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop the registry: SIGTERM, then SIGKILL if it does not exit in time. Idempotent."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.info.config.parent, ignore_errors=True)

    def __enter__(self) -> EmbeddedRegistry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    port: int | None = None, data_dir: Path | None = None, *, on_ready: Callable[[RegistryInfo], None] | None = None
) -> int:
    """Run the embedded registry in the foreground until SIGINT or SIGTERM; returns 0 on a clean stop.

    Args:
        port: the 127.0.0.1 port; a free one when None.
        data_dir: the storage root; `default_data_dir()` when None.
        on_ready: called with the RegistryInfo once `/v2/` answers (the CLI prints it).

    Raises:
        LocalRunError: the registry could not start, or it exited on its own.
    """
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        # Only forward the signal: the main thread is inside Popen.wait(), which holds its lock.
        nonlocal stopping
        stopping = True
        registry.terminate()

    registry = EmbeddedRegistry.start(port=port, data_dir=data_dir)
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready(registry.info)
        status = registry.wait()
        if not stopping:
            raise LocalRunError(
                f"{BINARY} exited with status {status}", hint=f"the registry's log ends: {registry.log_tail()}"
            )
    finally:
        registry.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
