"""Real components for tests: registries, a private buildah store, a local base image, a builder user.

Everything here starts the real thing on this machine (shared/research/machine.md) and
stops what it started; nothing is mocked. Tests import it as ``from realworld import ...``
and use the fixtures by name (conftest-free: a test module imports the fixtures it uses).

Fixtures:
    registry           session: docker-registry, no auth, plain HTTP        -> Registry
    auth_registry      session: the same with htpasswd (bcrypt) auth        -> Registry (.username/.password)
    tls_registry       session: HTTPS with a self-signed cert (CA in .ca)   -> Registry
    buildah_store      session: private vfs store under tmp                 -> BuildahStore
    base_image         session: busybox-static FROM scratch, no pull        -> str (image name in buildah_store)
    builder_user       session: unprivileged user with subuid/subgid        -> BuilderUser

Helpers:
    start_registry(workdir, *, htpasswd=None, tls=False, broken_storage=False) -> Registry
                                              (call .stop(); .kill() for crash tests; broken_storage: 500s)
    make_base_image(store, workdir, name=BASE_IMAGE, user=None) -> str   busybox FROM scratch into any store
    run_step(module, *args, env=None, user=None, prefix=None) -> subprocess.CompletedProcess[str]
                                              (prefix: e.g. faults.fault_command([], ...) to run under a fault)
    write_context(dir, dockerfile, files) -> Path
    docker_auth_file(path, host, username, password) -> Path
    require_root(), require_tools(*names)     skip with a stated reason

Runtime faults come from tests/faults.py (seccomp ENOSYS/EPERM and max_user_namespaces=0).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from workflows.registry import free_port

__all__ = [
    "BASE_IMAGE",
    "BUILDER_USER",
    "BuildahStore",
    "BuilderUser",
    "ROOT",
    "Registry",
    "auth_registry",
    "base_image",
    "buildah_store",
    "builder_user",
    "docker_auth_file",
    "make_base_image",
    "registry",
    "require_root",
    "require_tools",
    "run_step",
    "start_registry",
    "tls_registry",
    "write_context",
]

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/imagegate-test/busybox:1"
BUILDER_USER = "imagegate-builder"
# The registry answers /v2/ in about 20 ms here (machine.md row 2); this only bounds a broken start.
_READY_TIMEOUT = 15.0
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def require_root() -> None:
    """Skip unless root: these fixtures add users, write uid maps and run buildah's root store."""
    if os.geteuid() != 0:
        pytest.skip("needs root (real buildah, useradd, uid maps); run scripts/test as root")


def require_tools(*names: str) -> None:
    """Skip naming the missing tools and the command that installs them."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run scripts/setup as root")


@dataclass
class Registry:
    """A docker-registry process started by a fixture; stop() or kill() it by PID."""

    host: str
    scheme: str
    storage: Path
    log: Path
    process: subprocess.Popen[bytes]
    username: str | None = None
    password: str | None = None
    ca: Path | None = None

    def ref(self, repo: str, tag: str = "1") -> str:
        """An image reference on this registry."""
        return f"{self.host}/{repo}:{tag}"

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """Docker-Content-Digest of a manifest as the registry serves it, None if it has none."""
        request = urllib.request.Request(
            f"{self.scheme}://{self.host}/v2/{repo}/manifests/{reference}",
            method="HEAD",
            headers={"Accept": f"{_OCI_MANIFEST}, {_DOCKER_MANIFEST}"},
        )
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._ssl()) as response:
                return response.headers["Docker-Content-Digest"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def uploads_in_progress(self) -> list[Path]:
        """Blob uploads the registry has started writing and not finished (its _uploads dirs)."""
        repos = self.storage / "docker" / "registry" / "v2" / "repositories"
        return [p for p in repos.glob("**/_uploads/*/data") if p.is_file() and p.stat().st_size > 0]

    def _ssl(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca else None

    def answers(self) -> bool:
        """True once /v2/ answers (200, or 401 when auth is on)."""
        try:
            with urllib.request.urlopen(f"{self.scheme}://{self.host}/v2/", timeout=1, context=self._ssl()):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: no graceful shutdown of open uploads."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers. Idempotent."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "registry.crt", workdir / "registry.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def start_registry(
    workdir: Path, *, htpasswd: tuple[str, str] | None = None, tls: bool = False, broken_storage: bool = False
) -> Registry:
    """Start docker-registry on a free 127.0.0.1 port with its own config; returns once /v2/ answers.

    Args:
        workdir: a fresh directory for config, storage, log (and htpasswd, certificate).
        htpasswd: (username, password) turns on htpasswd auth with a bcrypt entry.
        tls: serve HTTPS with a self-signed certificate for 127.0.0.1 (Registry.ca is it).
        broken_storage: the storage root is a regular file, so /v2/ answers but every repository
            operation fails with a real 500 Internal Server Error.
    """
    require_tools("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    storage = workdir / "storage"
    if broken_storage:
        storage.write_text("not a directory\n")
    http: dict[str, object] = {"addr": host}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": http,
    }
    username = password = None
    if htpasswd:
        import bcrypt  # dev extra; only the auth variant needs it

        username, password = htpasswd
        entry = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{username}:{entry}\n")
        config["auth"] = {"htpasswd": {"realm": "imagegate-test", "path": str(workdir / "htpasswd")}}
    ca = None
    if tls:
        require_tools("openssl")
        ca, key = _self_signed(workdir)
        http["tls"] = {"certificate": str(ca), "key": str(key)}
    (workdir / "config.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    log = workdir / "registry.log"
    env = {**os.environ, "REGISTRY_HTTP_SECRET": os.urandom(16).hex()}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(workdir / "config.yml")],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env,
        )
    reg = Registry(host=host, scheme="https" if tls else "http", storage=storage, log=log,
                   process=process, username=username, password=password, ca=ca)
    deadline = time.monotonic() + _READY_TIMEOUT
    while not reg.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not come up on {host}: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    return reg


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A plain-HTTP registry without auth, shared by the session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory):
    """A plain-HTTP registry with htpasswd auth; credentials in .username/.password."""
    reg = start_registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=("imagegate", os.urandom(8).hex()))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory):
    """An HTTPS registry whose certificate no system store trusts (its CA is .ca)."""
    reg = start_registry(tmp_path_factory.mktemp("tls-registry"), tls=True)
    yield reg
    reg.stop()


def docker_auth_file(path: Path, host: str, username: str, password: str) -> Path:
    """A docker config.json with one credential, what REGISTRY_AUTH_FILE points at."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


@dataclass
class BuildahStore:
    """A private buildah store (vfs), so tests never touch /var/lib/containers or each other."""

    root: Path
    runroot: Path
    driver: str = "vfs"

    def args(self) -> list[str]:
        """buildah's global flags for this store (steps.build_runner takes the same ones)."""
        return ["--storage-driver", self.driver, "--root", str(self.root), "--runroot", str(self.runroot)]

    def buildah(self, *args: str, user: BuilderUser | None = None) -> str:
        """Run buildah on this store; its stdout, stripped."""
        kwargs = user.popen_kwargs() if user else {}
        out = subprocess.run(["buildah", *self.args(), *args], check=True, capture_output=True, text=True, **kwargs)
        return out.stdout.strip()


def make_base_image(store: BuildahStore, workdir: Path, name: str = BASE_IMAGE, user: BuilderUser | None = None) -> str:
    """Commit busybox-static FROM scratch as `name` into `store` (no pull), about 0.2 s."""
    rootfs = workdir / "busybox-rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").mkdir(exist_ok=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "id", "mkdir", "touch", "uname", "env", "true", "false"):
        link = rootfs / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    if user:
        user.chown(workdir)
    container = store.buildah("from", "scratch", user=user)
    try:
        store.buildah("copy", container, f"{rootfs}/", "/", user=user)
        store.buildah("config", "--env", "PATH=/bin", "--cmd", "/bin/sh", container, user=user)
        store.buildah("commit", "--quiet", container, name, user=user)
    finally:
        store.buildah("rm", container, user=user)
    return name


@pytest.fixture(scope="session")
def buildah_store(tmp_path_factory: pytest.TempPathFactory):
    """The session's private vfs store; removed at the end (vfs layers are plain files)."""
    require_root()
    require_tools("buildah")
    base = tmp_path_factory.mktemp("buildah")
    store = BuildahStore(root=base / "root", runroot=base / "run")
    yield store
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(buildah_store: BuildahStore, tmp_path_factory: pytest.TempPathFactory) -> str:
    """BASE_IMAGE in buildah_store: what test Dockerfiles name in FROM."""
    require_tools("busybox")
    return make_base_image(buildah_store, tmp_path_factory.mktemp("base"))


@dataclass
class BuilderUser:
    """An unprivileged user with /etc/subuid and /etc/subgid ranges, for rootless buildah."""

    name: str
    uid: int
    gid: int
    home: Path
    scratch: Path = field(default_factory=Path)  # a 0755 dir the user owns (pytest's tmp is 0700 root)
    # The venv's interpreter lives under /root (0700), and a CI checkout may sit where the user
    # cannot read. So the user runs the system python (same 3.11 ABI) on a copy of the steps
    # package and pydantic in scratch/pylib.
    python: str = "/usr/bin/python3"

    @property
    def pylib(self) -> Path:
        """What the user's python imports: a copy of steps/ and pydantic with its dependencies."""
        return self.scratch / "pylib"

    @property
    def runtime_dir(self) -> Path:
        """XDG_RUNTIME_DIR: without it rootless skopeo/buildah look in /run/containers/UID (4j)."""
        return self.scratch / "xdg"

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment for the user, in which `python` imports steps and pydantic."""
        env = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PYTHONPATH": str(self.pylib),
            "LANG": "C.UTF-8",
        }
        return {**env, **extra}

    def popen_kwargs(self) -> dict[str, object]:
        """subprocess kwargs that run the child as this user (uid, gid, no extra groups)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "env": self.env(), "cwd": str(self.scratch)}

    def chown(self, path: Path) -> None:
        """Give `path` (recursively) to the user."""
        for p in [path, *path.rglob("*")]:
            os.lchown(p, self.uid, self.gid)

    def mkdtemp(self, prefix: str) -> Path:
        """A fresh directory the user owns, inside its scratch dir."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch))
        path.chmod(0o755)
        os.chown(path, self.uid, self.gid)
        return path


@pytest.fixture(scope="session")
def builder_user():
    """BUILDER_USER, created with useradd (which adds subuid/subgid ranges) if absent; kept afterwards."""
    require_root()
    require_tools("useradd", "newuidmap", "newgidmap")
    try:
        entry = pwd.getpwnam(BUILDER_USER)
    except KeyError:
        # Another session may create it at the same moment: then useradd fails and the user exists.
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", BUILDER_USER], capture_output=True)
        entry = pwd.getpwnam(BUILDER_USER)
    _ensure_subordinate_ids(BUILDER_USER)
    if not Path("/usr/bin/python3").is_file():
        pytest.skip("/usr/bin/python3 is missing: the builder user cannot run the venv's interpreter under /root")
    scratch = Path(tempfile.mkdtemp(prefix="imagegate-builder-"))
    user = BuilderUser(name=BUILDER_USER, uid=entry.pw_uid, gid=entry.pw_gid, home=Path(entry.pw_dir),
                       scratch=scratch)
    scratch.chmod(0o755)
    user.runtime_dir.mkdir(mode=0o700)
    user.chown(scratch)
    _copy_python_packages(user.pylib)
    check = subprocess.run([user.python, "-c", "import steps.build_runner"], capture_output=True, text=True,
                           **user.popen_kwargs())
    if check.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        pytest.skip(f"{user.python} cannot import the steps package and pydantic: {check.stderr.strip()[-300:]}")
    yield user
    # The user's store holds files owned by its subordinate uids; root can remove them.
    shutil.rmtree(scratch, ignore_errors=True)


def _ensure_subordinate_ids(name: str) -> None:
    """Give `name` a 65536-id range in /etc/subuid and /etc/subgid unless useradd already did."""
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        entries = [line.split(":") for line in Path(path).read_text().splitlines() if line.count(":") == 2]
        if any(e[0] == name for e in entries):
            continue
        start = max([100000, *(int(e[1]) + int(e[2]) for e in entries)])
        subprocess.run(["usermod", flag, f"{start}-{start + 65535}", name], check=True, capture_output=True)


def _copy_python_packages(target: Path) -> None:
    """Copy steps/ and pydantic's packages (world-readable) where an unprivileged user can import them."""
    target.mkdir()
    shutil.copytree(ROOT / "steps", target / "steps", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue  # an older pydantic without this dependency
        if spec.submodule_search_locations:
            source = Path(spec.origin).parent
            shutil.copytree(source, target / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(spec.origin, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def run_step(
    module: str, *args: str, env: dict[str, str] | None = None, user: BuilderUser | None = None,
    prefix: list[str] | None = None, timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m steps.MODULE ARGS` as a process, as root or as `user` (behind `prefix`, e.g. a fault)."""
    if user:
        argv = [*(prefix or []), user.python, "-m", f"steps.{module}", *args]
        kwargs = user.popen_kwargs()
        kwargs["env"] = {**kwargs["env"], **(env or {})}  # type: ignore[dict-item]
        if prefix:  # the fault launcher drops privileges itself, after loading its filter
            kwargs = {k: v for k, v in kwargs.items() if k not in ("user", "group", "extra_groups")}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[arg-type]
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", f"steps.{module}", *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
    )


def write_context(directory: Path, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A build context: `Dockerfile` plus files (relative path -> content)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return directory
