"""Real runtime faults for tests: make user namespaces unavailable to one command, then exec it.

Two faults, as in ../shared/research/machine.md section 5, composable in one call:

- ``--errno ENOSYS|EPERM|...``: a seccomp filter (libseccomp.so.2 through ctypes) makes
  ``unshare(2)`` and ``clone(2)`` fail with that errno whenever their flags contain
  CLONE_NEWUSER, and ``clone3(2)`` fail with ENOSYS so glibc falls back to ``clone(2)``
  (clone3 passes its flags in a struct that seccomp cannot inspect). Every other call,
  threads and ``unshare -m`` included, still works.
- ``--max-user-namespaces N``: the command runs in a child user namespace (identity map,
  made by root) whose ``user.max_user_namespaces`` is N; with 0, ``unshare(CLONE_NEWUSER)``
  fails with ENOSPC, as on AWS Fargate. The host sysctl is never written (root here lacks
  CAP_SYS_RESOURCE, and the limit is per user namespace anyway).

``--user UID[:GID]`` drops to that user (supplementary groups cleared) right before exec,
after the filter is loaded. When the launcher runs as root the filter is loaded *without*
no_new_privs, so setuid helpers such as newuidmap keep working, as in a pod whose
securityContext allows privilege escalation; ``--no-new-privs`` sets it anyway (what
``allowPrivilegeEscalation: false`` does). Without root, no_new_privs is always set
(the kernel requires it for an unprivileged filter).

CLI::

    python tests/faults.py --errno ENOSYS [--user 1001:1001] -- buildah unshare id
    python tests/faults.py --max-user-namespaces 0 --user 1001:1001 -- env HOME=/home/b buildah bud .

The launcher execs the command (same PID) in the seccomp-only case; with
``--max-user-namespaces`` it forks, waits, and exits with the child's status
(128+N when the child died of signal N), forwarding SIGTERM/SIGINT/SIGHUP to it; the child
gets SIGKILL should the launcher die. Its own errors exit 125, like ``env``/``unshare``.

Library: ``fault_command(cmd, errno_name=..., max_user_namespaces=..., user=...)`` returns
the argv to pass to subprocess; ``apply_seccomp(errno_value)`` loads the filter in the
calling process (irreversible: call it in a child).

stdlib only, so it runs under any python3 (including /usr/bin/python3 as another user).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["CLONE_NEWUSER", "FAULTS_PY", "apply_seccomp", "fault_command", "main"]

FAULTS_PY = Path(__file__).resolve()
CLONE_NEWUSER = 0x10000000  # include/uapi/linux/sched.h
_LAUNCH_ERROR = 125
_PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h

# libseccomp ABI (seccomp.h, libseccomp 2.5): action values, compare ops, filter attributes.
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_CMP_MASKED_EQ = 7
_SCMP_FLTATR_CTL_NNP = 3


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: compare syscall argument `arg` with `op` against datum_a/datum_b."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class FaultError(Exception):
    """The fault could not be set up (no libseccomp, not root, a bad argument)."""


def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise FaultError(f"libseccomp.so.2 is not installed ({exc}): apt-get install libseccomp2") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    # rule_add is variadic over structs; the _array form has a fixed signature ctypes can call.
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _check(rc: int, what: str) -> None:
    if rc < 0:  # libseccomp returns -errno
        raise FaultError(f"{what} failed: {os.strerror(-rc)}")


def apply_seccomp(errno_value: int, *, no_new_privs: bool | None = None) -> None:
    """Load the userns-denying filter into this process and its future children.

    Args:
        errno_value: what unshare/clone with CLONE_NEWUSER return (e.g. errno.ENOSYS).
        no_new_privs: set no_new_privs; None sets it only when not root (the kernel needs
            it for a filter loaded without CAP_SYS_ADMIN).
    """
    lib = _libseccomp()
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise FaultError("seccomp_init failed")
    try:
        nnp = (os.geteuid() != 0) if no_new_privs is None else no_new_privs
        _check(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, int(nnp)), "seccomp_attr_set(CTL_NNP)")
        deny = _SCMP_ACT_ERRNO | (errno_value & 0xFFFF)
        newuser = _ArgCmp(0, _SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
        for name in ("unshare", "clone"):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            _check(lib.seccomp_rule_add_array(ctx, deny, nr, 1, ctypes.byref(newuser)), f"rule for {name}")
        nr = lib.seccomp_syscall_resolve_name(b"clone3")
        if nr >= 0:  # older kernels/libseccomp have no clone3
            enosys = _SCMP_ACT_ERRNO | errno.ENOSYS
            _check(lib.seccomp_rule_add_array(ctx, enosys, nr, 0, None), "rule for clone3")
        _check(lib.seccomp_load(ctx), "seccomp_load")
    finally:
        lib.seccomp_release(ctx)


def _parse_user(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise FaultError(f"--user {text!r} is not UID[:GID] (numbers)") from None


def _drop_to(user: tuple[int, int] | None) -> None:
    if user is None:
        return
    uid, gid = user
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _exec(cmd: list[str]) -> None:
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        sys.stderr.write(f"faults: cannot exec {cmd[0]}: {exc.strerror}\n")
        os._exit(127 if exc.errno == errno.ENOENT else 126)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    return libc


def _run_in_limited_userns(limit: int, apply: Callable[[], None], cmd: list[str]) -> int:
    """Fork a child into a new user namespace with max_user_namespaces=limit; return its status."""
    if os.geteuid() != 0:
        raise FaultError("--max-user-namespaces needs root (it writes the child's uid_map)")
    ready_r, ready_w = os.pipe()  # child -> parent: unshared
    go_r, go_w = os.pipe()  # parent -> child: maps written
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        try:
            libc = _libc()
            if libc.unshare(CLONE_NEWUSER) != 0:
                raise FaultError(f"unshare(CLONE_NEWUSER): {os.strerror(ctypes.get_errno())}")
            os.write(ready_w, b"1")
            if os.read(go_r, 1) != b"1":
                raise FaultError("the parent could not write the uid/gid maps")
            Path("/proc/sys/user/max_user_namespaces").write_text(f"{limit}\n")
            apply()
            # Die with the launcher (a test's timeout kills only it); set after the uid change,
            # which clears it.
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == 1:
                raise FaultError("the launcher died before the command started")
        except BaseException as exc:  # a forked child never returns into the caller's code
            sys.stderr.write(f"faults: {exc}\n")
            os._exit(_LAUNCH_ERROR)
        _exec(cmd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    os.close(ready_w)
    os.close(go_r)
    ok = os.read(ready_r, 1) == b"1"
    if ok:
        try:
            for name in ("uid_map", "gid_map"):
                Path(f"/proc/{pid}/{name}").write_text("0 0 4294967295\n")
            os.write(go_w, b"1")
        except OSError as exc:
            sys.stderr.write(f"faults: writing /proc/{pid} maps: {exc}\n")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def fault_command(
    cmd: list[str],
    *,
    errno_name: str | None = None,
    max_user_namespaces: int | None = None,
    user: str | None = None,
    no_new_privs: bool = False,
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs `cmd` under the given faults (for subprocess.run)."""
    argv = [python, str(FAULTS_PY)]
    if errno_name:
        argv += ["--errno", errno_name]
    if max_user_namespaces is not None:
        argv += ["--max-user-namespaces", str(max_user_namespaces)]
    if user:
        argv += ["--user", user]
    if no_new_privs:
        argv.append("--no-new-privs")
    return [*argv, "--", *cmd]


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI, set up the faults and exec the command."""
    parser = argparse.ArgumentParser(
        prog="faults.py",
        description="Run a command with user namespaces denied (seccomp errno or max_user_namespaces).",
    )
    parser.add_argument("--errno", dest="errno_name", help="ENOSYS, EPERM, ...: unshare/clone(CLONE_NEWUSER) fail so")
    parser.add_argument("--max-user-namespaces", type=int, help="run in a child userns with this limit (0: ENOSPC)")
    parser.add_argument("--user", help="UID[:GID] to run the command as (needs root)")
    parser.add_argument("--no-new-privs", action="store_true", help="set no_new_privs even as root")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command [args...]")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the command after --")
    if args.errno_name is None and args.max_user_namespaces is None:
        parser.error("give --errno and/or --max-user-namespaces")
    try:
        errno_value = None
        if args.errno_name is not None:
            errno_value = getattr(errno, args.errno_name.upper(), None)
            if not isinstance(errno_value, int):
                raise FaultError(f"--errno {args.errno_name!r} is not an errno name such as ENOSYS or EPERM")
        user = _parse_user(args.user) if args.user else None

        def apply() -> None:
            if errno_value is not None:
                apply_seccomp(errno_value, no_new_privs=True if args.no_new_privs else None)
            _drop_to(user)

        if args.max_user_namespaces is not None:
            return _run_in_limited_userns(args.max_user_namespaces, apply, cmd)
        apply()
    except (FaultError, OSError) as exc:
        sys.stderr.write(f"faults: {exc}\n")
        return _LAUNCH_ERROR
    _exec(cmd)
    return _LAUNCH_ERROR  # not reached: _exec replaces the process or exits


if __name__ == "__main__":
    sys.exit(main())
