"""Step `build-runner`: build the request's image with buildah and write it as an OCI archive.

Usage::

    python -m steps.build_runner --param context=app --param destination=reg/app:1 ...
        [--workspace DIR] [--archive PATH] [--log PATH] [--cache-dir DIR]
        [--storage-driver vfs|overlay] [--root DIR] [--runroot DIR] [--out DIR]

Reads:
    --param NAME=VALUE  the request, repeated (kebab-case fields of steps.contract.BuildRequest);
                        context, dockerfile, build-args and labels are used.
    --workspace DIR     where a relative context lives (default /workspace). A context written as
                        /workspace/... is taken relative to DIR too, so `run --local` can map it.
                        A context that is a tar file is unpacked first; git:// and https:// contexts
                        go to buildah as they are.
    --archive PATH      where the OCI archive goes (default steps.contract.ARCHIVE_PATH).
    --log PATH          the full build log, buildah's stdout and stderr in order (default BUILD_LOG_PATH).
    --cache-dir DIR     a persistent layer cache: buildah's storage (images and the `--layers` cache)
                        lives in DIR/storage and its run state in DIR/run, unless --root/--runroot
                        say otherwise. With the same DIR an unchanged rebuild reuses every layer.
    --storage-driver D  buildah's storage driver (env STORAGE_DRIVER, buildah's own variable).
    --root DIR          buildah's storage root (env IMAGEGATE_STORAGE_ROOT).
    --runroot DIR       buildah's run root (env IMAGEGATE_STORAGE_RUNROOT).
    BUILDAH             env: the buildah binary (default `buildah` on PATH).

Writes into --out (names from steps.contract.STEPS["build-runner"]):
    exit-code   buildah's exit code (0 on success; 2 when the step's own input was bad).
    log-tail    the last 4 KiB of the log, what classify reads when the build failed.
    archive     the archive's path on success, empty otherwise.
    digest      the manifest digest inside the archive on success, empty otherwise.

Runs the same as root and rootless: buildah's own rootless handling (user namespace from
/etc/subuid) applies; `--isolation chroot` needs no OCI runtime (crun fails on hybrid
cgroups, see shared/research/machine.md 3f). Exits 0 on success, otherwise buildah's exit
code, with the full log at --log.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

from steps._io import add_common_args, parse_param_pairs, write_outputs
from steps.contract import (
    ARCHIVE_PATH,
    BUILD_LOG_PATH,
    REMOTE_CONTEXT_SCHEMES,
    WORKSPACE_DIR,
    BuildRequest,
    describe_errors,
    parse_reference,
)
from steps.errors import InputError

__all__ = ["Storage", "build", "main"]

STEP = "build-runner"
LOG_TAIL_BYTES = 4096
# Exit code for "the step's own input was bad" (argparse's usage code); buildah uses 1 and 125.
USAGE_EXIT = 2
# What the shell reports for a missing command; classify sees the same text in the log.
NOT_FOUND_EXIT = 127


class Storage(BaseModel):
    """Where buildah keeps images and cached layers; empty fields mean buildah's default."""

    driver: str = ""
    root: str = ""
    runroot: str = ""

    def global_args(self) -> list[str]:
        """The global flags for buildah, which must come before the subcommand."""
        args = []
        for flag, value in (("--storage-driver", self.driver), ("--root", self.root), ("--runroot", self.runroot)):
            if value:
                args += [flag, value]
        return args


class Outcome(BaseModel):
    """What one build produced: the step's outputs, as typed values."""

    exit_code: int
    log_tail: str
    archive: str = ""
    digest: str = ""


def bud_args(request: BuildRequest, context: str, dockerfile: Path, tag: str) -> list[str]:
    """`buildah bud` arguments: every flag before the positional context (machine.md 3c)."""
    args = [
        "bud",
        "--isolation", "chroot",
        "--timestamp", "0",  # reproducible: same inputs, same image ID and digest
        "--layers",
        "--format", "oci",
        "-f", str(dockerfile),
        "-t", tag,
    ]
    for key, value in sorted(request.build_args.items()):
        args += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(request.labels.items()):
        args += ["--label", f"{key}={value}"]
    return [*args, context]


def build(request: BuildRequest, workspace: Path, archive: Path, log: Path, storage: Storage) -> Outcome:
    """Build the request with buildah and push the image into an OCI archive at `archive`."""
    buildah = os.environ.get("BUILDAH", "buildah")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink, _context_dir(request, workspace) as context:
        if context.startswith(REMOTE_CONTEXT_SCHEMES):
            dockerfile: Path | str = request.dockerfile
        else:
            dockerfile = Path(context) / request.dockerfile
            if not dockerfile.is_file():
                sink.write(f"Error: dockerfile {request.dockerfile!r} not found in the context {context}\n".encode())
                sink.flush()
                return Outcome(exit_code=USAGE_EXIT, log_tail=_tail(log))
        tag = _local_tag(request.destination)
        code = _run([buildah, *storage.global_args(), *bud_args(request, context, Path(dockerfile), tag)], sink)
        if code != 0:
            return Outcome(exit_code=code, log_tail=_tail(log))
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            digest_file = Path(scratch) / "digest"
            push = ["push", "--digestfile", str(digest_file), tag, f"oci-archive:{archive}"]
            code = _run([buildah, *storage.global_args(), *push], sink)
            digest = digest_file.read_text().strip() if code == 0 and digest_file.is_file() else ""
    if code != 0:
        return Outcome(exit_code=code, log_tail=_tail(log))
    return Outcome(exit_code=0, log_tail=_tail(log), archive=str(archive), digest=digest)


def _local_tag(destination: str) -> str:
    """The name the image gets in local storage: the destination without a digest (buildah -t takes none)."""
    ref = parse_reference(destination)
    return f"{ref['host']}/{ref['path']}:{ref['tag'] or 'latest'}"


def _run(argv: list[str], sink) -> int:
    """Run argv, copying its merged output to `sink` and to our stdout (the pod log) as it comes."""
    sink.write(f"+ {' '.join(argv)}\n".encode())
    sink.flush()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        sink.write(f"Error: {argv[0]}: executable file not found in $PATH\n".encode())
        return NOT_FOUND_EXIT
    assert proc.stdout is not None
    for line in proc.stdout:
        sink.write(line)
        sys.stdout.buffer.write(line)
    sink.flush()
    sys.stdout.flush()
    return proc.wait()


def _tail(log: Path) -> str:
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - LOG_TAIL_BYTES))
        return f.read().decode(errors="replace")


@contextmanager
def _context_dir(request: BuildRequest, workspace: Path) -> Iterator[str]:
    """The build context as buildah takes it: a directory (a tar is unpacked) or a URL."""
    path = request.context_path(workspace)
    if path is None:
        yield request.context
        return
    if path.is_dir():
        yield str(path)
    elif path.is_file() and tarfile.is_tarfile(path):
        with tempfile.TemporaryDirectory(prefix="imagegate-context-") as unpacked:
            with tarfile.open(path) as tar:
                tar.extractall(unpacked, filter="data")  # no absolute paths, links out or devices
            yield unpacked
    else:
        raise InputError(f"context: {request.context!r} is neither a directory nor a tar archive under {workspace}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m steps.build_runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a request parameter, repeated")
    p.add_argument("--workspace", type=Path, default=Path(WORKSPACE_DIR), help="the workspace volume")
    p.add_argument("--archive", type=Path, default=Path(ARCHIVE_PATH), help="where the OCI archive goes")
    p.add_argument("--log", type=Path, default=Path(BUILD_LOG_PATH), help="the full build log")
    p.add_argument("--cache-dir", type=Path, help="persistent storage for images and cached layers")
    p.add_argument("--storage-driver", default=os.environ.get("STORAGE_DRIVER", ""), help="vfs or overlay")
    p.add_argument("--root", default=os.environ.get("IMAGEGATE_STORAGE_ROOT", ""), help="buildah storage root")
    p.add_argument("--runroot", default=os.environ.get("IMAGEGATE_STORAGE_RUNROOT", ""), help="buildah run root")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Build, write the outputs, and exit with buildah's code."""
    args = _parser().parse_args(argv)
    storage = Storage(
        driver=args.storage_driver,
        root=args.root or (str(args.cache_dir / "storage") if args.cache_dir else ""),
        runroot=args.runroot or (str(args.cache_dir / "run") if args.cache_dir else ""),
    )
    try:
        try:
            request = BuildRequest.from_parameters(parse_param_pairs(args.param))
        except ValidationError as exc:
            raise InputError("; ".join(describe_errors(exc))) from None
        except ValueError as exc:
            raise InputError(str(exc)) from None
        outcome = build(request, args.workspace, args.archive, args.log, storage)
    except InputError as exc:
        # Still write every output: classify reads the log tail and names this a config error.
        message = f"Error: imagegate build-runner: {exc}\n"
        sys.stderr.write(message)
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text(message)
        outcome = Outcome(exit_code=USAGE_EXIT, log_tail=message)
    write_outputs(
        STEP,
        args.out,
        {"exit-code": str(outcome.exit_code), "log-tail": outcome.log_tail, "archive": outcome.archive,
         "digest": outcome.digest},
    )
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
