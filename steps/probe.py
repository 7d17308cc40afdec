"""Step `probe`: what this node really allows a builder to do, and the mode `auto` resolves to.

Reads:
    --mode MODE           the request's mode (auto, kaniko, buildkit, runner, synthetic).
    --default-mode MODE   the cluster's default builder (kaniko, buildkit or runner; default
                          runner, the `mode` default in steps.contract.STEPS) used when nothing
                          on this node can build, so the real failure is captured and classified.
    the node itself:      a forked child's unshare(CLONE_NEWUSER) (ctypes), /proc/self/status
                          (Seccomp, NoNewPrivs, CapEff), the AppArmor label (/proc/self/attr), the uid,
                          /proc/sys/user/max_user_namespaces, newuidmap/newgidmap on PATH (and whether
                          they are setuid), /dev/fuse, and the builder binaries buildah, /kaniko/executor,
                          buildctl-daemonless.sh with their versions. PATH as in the environment.
    --out DIR             output directory (default steps.contract.OUTPUT_DIR or $IMAGEGATE_OUT).

Writes:
    DIR/mode              always kaniko, buildkit or runner (see resolve_mode).
    DIR/capabilities      steps.contract.Capabilities as JSON (also printed to stdout).
    Exit status 0: what the node allows is data, not an error.

How `auto` resolves (resolve_mode), first rule that holds:
1. an explicit kaniko, buildkit or runner request is kept as asked (the build then shows what fails);
2. a builder installed on this node that can run here, in the order runner (buildah), buildkit,
   kaniko: buildah needs root, or a working user namespace plus newuidmap and newgidmap;
   buildkit needs root or a working user namespace; kaniko needs root;
3. no builder installed here (the probe runs in the steps image, builders in their own images):
   buildkit when a user namespace works (rootless BuildKit), else kaniko when running as root;
4. otherwise the cluster default (--default-mode).
`synthetic` resolves like `auto`: the template routes synthetic requests past the build, the
probe still reports the node.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import sys
from pathlib import Path

from steps._io import add_common_args, write_outputs
from steps.contract import STEPS, Capabilities, Mode

__all__ = ["BUILDER_BINARIES", "builder_version", "main", "probe_node", "resolve_mode", "try_userns"]

CLONE_NEWUSER = 0x10000000  # include/uapi/linux/sched.h
# Builder key in Capabilities.builders -> (the binary the build template runs, the mode it serves).
BUILDER_BINARIES: dict[str, tuple[str, Mode]] = {
    "buildah": ("buildah", Mode.RUNNER),
    "buildkit": ("buildctl-daemonless.sh", Mode.BUILDKIT),
    "kaniko": ("/kaniko/executor", Mode.KANIKO),
}
# How to ask each builder its version (buildctl-daemonless.sh is a wrapper around buildctl).
_VERSION_ARGS = {"buildah": ["--version"], "kaniko": ["version"], "buildkit": ["--version"]}
_VERSION_BINARY = {"buildkit": "buildctl"}
_VERSION = re.compile(r"v?(\d+\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.-]+)?)")
_BUILD_MODES = (Mode.KANIKO, Mode.BUILDKIT, Mode.RUNNER)
DEFAULT_MODE = Mode(STEPS["probe"].outputs["mode"])


def try_userns() -> tuple[bool, str | None]:
    """Fork a child that calls unshare(CLONE_NEWUSER); (worked, errno text when it did not)."""
    import ctypes
    import errno

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        try:
            os.close(read_fd)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.unshare.argtypes = [ctypes.c_int]
            code = 0 if libc.unshare(CLONE_NEWUSER) == 0 else ctypes.get_errno()
            os.write(write_fd, str(code).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        reply = pipe.read()
    os.waitpid(pid, 0)
    if not reply.isdigit():
        return False, "the probe child died before reporting"
    err = int(reply)
    if err == 0:
        return True, None
    return False, f"{errno.errorcode.get(err, str(err))}: {os.strerror(err)}"


def _status_fields(path: Path = Path("/proc/self/status")) -> dict[str, str]:
    fields = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    except OSError:
        pass
    return fields


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _setuid_helper(name: str) -> bool:
    """`name` is on PATH and either setuid root or carries file capabilities (newuidmap needs one)."""
    found = shutil.which(name)
    if not found:
        return False
    mode = os.stat(found).st_mode
    if mode & stat.S_ISUID:
        return True
    try:
        return bool(os.getxattr(found, "security.capability"))
    except OSError:
        return False


def _apparmor_profile() -> str | None:
    """The AppArmor label of this process (`unconfined`, `cri-containerd.apparmor.d (enforce)`), or None."""
    for path in (Path("/proc/self/attr/apparmor/current"), Path("/proc/self/attr/current")):
        try:
            label = path.read_text().strip("\x00\n ")
        except OSError:  # no such file, or EINVAL when no LSM provides the attribute
            continue
        if label:
            return label
    return None


def builder_version(key: str) -> str | None:
    """The installed version of a builder (key of BUILDER_BINARIES), None when absent."""
    import subprocess

    binary = shutil.which(BUILDER_BINARIES[key][0])
    if binary is None:
        return None
    query = shutil.which(_VERSION_BINARY.get(key, binary)) or binary
    try:
        proc = subprocess.run([query, *_VERSION_ARGS[key]], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = _VERSION.search(proc.stdout + proc.stderr)
    return m[1] if m else "unknown"


def probe_node() -> Capabilities:
    """Examine this process's node; resolved_mode is left at the default (see resolve_mode)."""
    status = _status_fields()
    userns, userns_error = try_userns()
    seccomp = status.get("Seccomp")
    return Capabilities(
        uid=os.getuid(),
        userns=userns,
        userns_error=userns_error,
        seccomp=int(seccomp) if seccomp and seccomp.isdigit() else None,
        no_new_privs=status.get("NoNewPrivs") == "1",
        cap_eff=status.get("CapEff", ""),
        max_user_namespaces=_read_int(Path("/proc/sys/user/max_user_namespaces")),
        newuidmap=_setuid_helper("newuidmap"),
        newgidmap=_setuid_helper("newgidmap"),
        dev_fuse=os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK),
        apparmor=_apparmor_profile(),
        builders={key: builder_version(key) for key in BUILDER_BINARIES},
        resolved_mode=DEFAULT_MODE,
    )


def _can_run(key: str, caps: Capabilities) -> bool:
    root = caps.uid == 0
    if key == "buildah":
        return root or (caps.userns and caps.newuidmap and caps.newgidmap)
    if key == "buildkit":
        return root or caps.userns
    return root  # kaniko unpacks the image over its own root filesystem


def resolve_mode(requested: Mode, caps: Capabilities, default: Mode = DEFAULT_MODE) -> Mode:
    """The builder to run for `requested` on a node with `caps` (caps.resolved_mode is ignored).

    Always kaniko, buildkit or runner; the rules are in the module docstring.
    """
    if default not in _BUILD_MODES:
        raise ValueError(f"default mode {default.value!r} is not a builder: use kaniko, buildkit or runner")
    if requested in _BUILD_MODES:
        return requested
    for key, (_, mode) in BUILDER_BINARIES.items():
        if caps.builders.get(key) is not None and _can_run(key, caps):
            return mode
    if not any(v is not None for v in caps.builders.values()):
        if caps.userns:
            return Mode.BUILDKIT
        if caps.uid == 0:
            return Mode.KANIKO
    return default


def main(argv: list[str] | None = None) -> int:
    """Probe the node, resolve the mode, write `mode` and `capabilities`."""
    parser = argparse.ArgumentParser(prog="python -m steps.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", type=Mode, default=Mode.AUTO, help="the request's mode (default auto)")
    parser.add_argument(
        "--default-mode",
        type=Mode,
        default=DEFAULT_MODE,
        choices=_BUILD_MODES,
        help=f"the cluster's default builder (default {DEFAULT_MODE.value})",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    caps = probe_node()
    caps = caps.model_copy(update={"resolved_mode": resolve_mode(args.mode, caps, args.default_mode)})
    write_outputs("probe", args.out, {"mode": caps.resolved_mode.value, "capabilities": caps.to_json()})
    print(caps.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
