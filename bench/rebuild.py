"""Warm rebuild: buildah runner mode with layer caching, an unchanged context rebuilt after a cold build.

A rebuild of an unchanged context is where builders differ most: with a layer cache every
RUN is a cache hit, without one it runs again. The figure runs `steps.build_runner` twice
on the same context, cache directory kept, and reports warm/cold (target <= 0.25). The
base image is made locally (busybox-static, nothing is pulled) in a private buildah store
under a temporary directory (`CONTAINERS_STORAGE_CONF`, vfs), never /var/lib/containers; that
store is the step's `--cache-dir`, so the base is already there, as in a cache volume.
For reference, the same pair of builds with plain `buildah bud --layers` is printed too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench._measure import PYTHON, ROOT, ChildRun, Figure, Measure, Op, Target, missing, run_child, scratch

TARGET = Target(measure=Measure.RATIO, op=Op.LE, limit=0.25)
BASE_IMAGE = "localhost/imagegate-bench-base:1"
_BUSYBOX = Path("/bin/busybox")
_APPLETS = ("sh", "ls", "cat", "echo", "mkdir", "seq", "sha256sum", "dd", "true")


class Store:
    """A private buildah store laid out as build_runner's `--cache-dir` expects (storage/, run/)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "storage.conf"
        root.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{root / "storage"}"\n'
            f'runroot = "{root / "run"}"\n'
        )

    @property
    def env(self) -> dict[str, str]:
        """The environment every buildah in this store runs with."""
        return os.environ | {"CONTAINERS_STORAGE_CONF": str(self.conf), "BUILDAH_ISOLATION": "chroot"}

    def buildah(self, *args: str) -> str:
        """Run buildah in this store; its stdout."""
        done = subprocess.run(["buildah", *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done.stdout.strip()

    def make_base(self, scratch_dir: Path) -> None:
        """BASE_IMAGE: busybox-static and a few applets, committed from scratch (no pull)."""
        rootfs = scratch_dir / "rootfs"
        for sub in ("bin", "tmp", "etc"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(_BUSYBOX, rootfs / "bin" / "busybox")
        for applet in _APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        container = self.buildah("from", "scratch")
        try:
            self.buildah("copy", container, f"{rootfs}/", "/")
            self.buildah("config", "--env", "PATH=/bin", "--cmd", "/bin/sh", container)
            self.buildah("commit", "--quiet", container, BASE_IMAGE)
        finally:
            self.buildah("rm", container)

    def remove(self) -> None:
        """Unmount and delete everything in the store (vfs leaves no mounts, but be sure)."""
        subprocess.run(["buildah", "rm", "--all"], env=self.env, capture_output=True)
        subprocess.run(["buildah", "rmi", "--all", "--force"], env=self.env, capture_output=True)


def make_context(directory: Path, loops: int) -> None:
    """A context with a few RUN steps that each do real work (a shell loop) and a COPY."""
    (directory / "app").mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (directory / "app" / f"part-{i}.txt").write_text(f"part {i}\n" * 1000)
    loop = f"i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done"
    (directory / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        f"RUN {loop}; echo $i > /first\n"
        f"RUN {loop}; seq 1 20000 > /numbers\n"
        "COPY app /app\n"
        f"RUN {loop}; cat /app/* /numbers | sha256sum > /checksum\n"
        'CMD ["cat", "/checksum"]\n'
    )


def _runner_command(workspace: Path, run: str, store: Store) -> list[str]:
    return [
        PYTHON, "-m", "steps.build_runner",
        "--param", "context=ctx",
        "--param", "destination=registry.example.com/bench/app:1",
        "--workspace", str(workspace),
        "--archive", str(workspace / f"{run}.oci.tar"),
        "--log", str(workspace / f"{run}.log"),
        "--cache-dir", str(store.root),
        "--storage-driver", "vfs",
        "--out", str(workspace / f"out-{run}"),
    ]


def _pair(name: str, note: str, cold: ChildRun, warm: ChildRun, target: Target | None) -> Figure:
    return Figure(
        name=name, unit="s", value=warm.wall_s, baseline=cold.wall_s, baseline_name="cold build, same run",
        target=target, note=note,
    )


def figures(loops: int = 1_000_000) -> list[Figure]:
    """warm/cold of steps.build_runner (the target), and of plain buildah bud --layers (reference)."""
    name = "warm rebuild: build_runner, unchanged context"
    if shutil.which("buildah") is None:
        return [missing(name, "s", TARGET, "buildah is not installed (scripts/setup installs it)")]
    with scratch("rebuild") as work:
        make_context(work / "ctx", loops)
        # Each pair gets its own fresh store, so neither cold build finds the other's layers.
        bud = ["buildah", "bud", "--layers", "--isolation", "chroot", "--timestamp", "0",
               "-t", "localhost/imagegate-bench-ref:1", str(work / "ctx")]
        with _store(work, "reference") as store:
            reference = _pair("warm rebuild: buildah bud --layers (reference)", "plain buildah, same context",
                              run_child(bud, env=store.env), run_child(bud, env=store.env), None)
        if not (ROOT / "steps" / "build_runner.py").is_file():
            return [missing(name, "s", TARGET, "steps/build_runner.py does not exist yet"), reference]
        with _store(work, "cache") as store:
            cold = run_child(_runner_command(work, "cold", store), env=store.env)
            warm = run_child(_runner_command(work, "warm", store), env=store.env)
        note = f"3 RUN steps of {loops} shell iterations each; OCI archive written both times"
        return [_pair(name, note, cold, warm, TARGET), reference]


@contextmanager
def _store(work: Path, name: str) -> Iterator[Store]:
    store = Store(work / name)
    try:
        store.make_base(work / f"{name}-base")
        yield store
    finally:
        store.remove()
