"""probe: the real node facts, under real seccomp and user-namespace-limit faults, and the `auto` rule."""

import ctypes.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faults import fault_command

from steps.contract import Capabilities, Mode
from steps.probe import resolve_mode

ROOT = Path(__file__).resolve().parent.parent
BUILD_MODES = {Mode.KANIKO, Mode.BUILDKIT, Mode.RUNNER}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="fault injection writes uid maps and loads filters as root")
needs_seccomp = pytest.mark.skipif(
    ctypes.util.find_library("seccomp") is None, reason="libseccomp.so.2 is not installed (apt-get install libseccomp2)"
)


def own_status(key: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


def run_probe(tmp_path: Path, *args: str, wrap=None) -> tuple[Capabilities, str]:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "steps.probe", "--out", str(out), *args]
    proc = subprocess.run(wrap(cmd) if wrap else cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    caps = Capabilities.model_validate_json((out / "capabilities").read_text())
    assert Capabilities.model_validate_json(proc.stdout) == caps
    return caps, (out / "mode").read_text()


def caps(**facts) -> Capabilities:
    base = dict(uid=1000, userns=False, builders={"buildah": None, "buildkit": None, "kaniko": None})
    base.update(facts)
    return Capabilities(resolved_mode=Mode.RUNNER, **base)


def test_probe_reports_this_nodes_real_facts(tmp_path):
    found, mode = run_probe(tmp_path)
    assert found.uid == os.getuid()
    assert found.cap_eff == own_status("CapEff")
    assert found.seccomp == int(own_status("Seccomp"))
    assert found.no_new_privs == (own_status("NoNewPrivs") == "1")
    assert found.max_user_namespaces == int(Path("/proc/sys/user/max_user_namespaces").read_text())
    for helper in ("newuidmap", "newgidmap"):
        path = shutil.which(helper)
        if path is None or os.stat(path).st_mode & 0o4000:  # absent, or setuid as Debian's uidmap ships it
            assert getattr(found, helper) == (path is not None), helper
    assert found.dev_fuse == os.access("/dev/fuse", os.R_OK | os.W_OK)
    if not Path("/sys/module/apparmor").exists():
        assert found.apparmor is None
    assert mode == found.resolved_mode.value
    assert mode in {m.value for m in BUILD_MODES}


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed (scripts/setup installs it)")
def test_probe_finds_buildah_and_its_version(tmp_path):
    version_line = subprocess.run(["buildah", "--version"], capture_output=True, text=True, check=True).stdout
    found, _ = run_probe(tmp_path)
    assert found.builders["buildah"] is not None
    assert f"version {found.builders['buildah']} " in version_line
    if not Path("/kaniko/executor").exists():
        assert found.builders["kaniko"] is None


@needs_root
def test_root_probe_can_create_a_user_namespace(tmp_path):
    found, _ = run_probe(tmp_path)
    assert (found.userns, found.userns_error) == (True, None)


@needs_root
@needs_seccomp
@pytest.mark.parametrize(
    ("errno_name", "text"),
    [
        pytest.param("ENOSYS", "Function not implemented", id="enosys"),
        pytest.param("EPERM", "Operation not permitted", id="eperm"),
    ],
)
def test_probe_under_a_seccomp_filter_sees_user_namespaces_denied(tmp_path, errno_name, text):
    found, mode = run_probe(tmp_path, wrap=lambda cmd: fault_command(cmd, errno_name=errno_name))
    assert found.userns is False
    assert found.userns_error == f"{errno_name}: {text}"
    assert found.seccomp == 2
    assert mode in {m.value for m in BUILD_MODES}


@needs_root
def test_probe_in_a_user_namespace_limited_to_zero_sees_enospc(tmp_path):
    found, _ = run_probe(tmp_path, wrap=lambda cmd: fault_command(cmd, max_user_namespaces=0))
    assert found.userns is False
    assert found.userns_error == "ENOSPC: No space left on device"
    assert found.max_user_namespaces == 0


@needs_root
@needs_seccomp
def test_fault_filter_denies_only_new_user_namespaces():
    # The launcher the build tests reuse: other namespaces and threads keep working.
    denied = subprocess.run(
        fault_command(["unshare", "-U", "true"], errno_name="ENOSYS"), capture_output=True, text=True
    )
    mount_ns = subprocess.run(fault_command(["unshare", "-m", "true"], errno_name="ENOSYS"), capture_output=True)
    threads = subprocess.run(
        fault_command(
            [sys.executable, "-c", "import threading as t; x=t.Thread(target=print); x.start(); x.join()"],
            errno_name="EPERM",
        ),
        capture_output=True,
    )
    assert denied.returncode == 1 and "Function not implemented" in denied.stderr
    assert mount_ns.returncode == 0
    assert threads.returncode == 0


def test_fault_launcher_rejects_an_unknown_errno():
    proc = subprocess.run(fault_command(["true"], errno_name="ENOPE"), capture_output=True, text=True)
    assert proc.returncode == 125 and "ENOPE" in proc.stderr


@pytest.mark.parametrize(
    ("requested", "node", "expected"),
    [
        pytest.param(Mode.KANIKO, caps(), Mode.KANIKO, id="explicit-kaniko-kept-even-where-it-cannot-run"),
        pytest.param(Mode.RUNNER, caps(uid=0), Mode.RUNNER, id="explicit-runner-kept"),
        pytest.param(Mode.BUILDKIT, caps(uid=0), Mode.BUILDKIT, id="explicit-buildkit-kept"),
        pytest.param(
            Mode.AUTO, caps(uid=0, builders={"buildah": "1.28.2"}), Mode.RUNNER, id="root-with-buildah-runner"
        ),
        pytest.param(
            Mode.AUTO,
            caps(userns=True, newuidmap=True, newgidmap=True, builders={"buildah": "1.28.2"}),
            Mode.RUNNER,
            id="rootless-buildah-with-userns-and-idmap-helpers-runner",
        ),
        pytest.param(
            Mode.AUTO,
            caps(userns=True, builders={"buildah": "1.28.2", "buildkit": "0.32.2"}),
            Mode.BUILDKIT,
            id="rootless-without-newuidmap-skips-buildah-for-buildkit",
        ),
        pytest.param(Mode.AUTO, caps(uid=0, builders={"kaniko": "1.23.2"}), Mode.KANIKO, id="root-with-kaniko-kaniko"),
        pytest.param(
            Mode.AUTO, caps(builders={"kaniko": "1.23.2"}), Mode.RUNNER, id="rootless-kaniko-cannot-run-default"
        ),
        pytest.param(Mode.AUTO, caps(userns=True), Mode.BUILDKIT, id="no-local-builder-userns-buildkit"),
        pytest.param(Mode.AUTO, caps(uid=0), Mode.KANIKO, id="no-local-builder-root-kaniko"),
        pytest.param(Mode.AUTO, caps(), Mode.RUNNER, id="nothing-works-cluster-default"),
        pytest.param(Mode.SYNTHETIC, caps(uid=0), Mode.KANIKO, id="synthetic-resolves-like-auto"),
    ],
)
def test_auto_resolution_rule(requested, node, expected):
    assert resolve_mode(requested, node) is expected


@pytest.mark.parametrize("requested", list(Mode), ids=lambda m: m.value)
@pytest.mark.parametrize("default", sorted(BUILD_MODES), ids=lambda m: f"default-{m.value}")
def test_resolved_mode_is_always_a_builder(requested, default):
    assert resolve_mode(requested, caps(), default) in BUILD_MODES
    assert resolve_mode(requested, caps(), default) in (requested, default)


def test_cluster_default_mode_is_used_when_nothing_can_build(tmp_path):
    assert resolve_mode(Mode.AUTO, caps(), Mode.KANIKO) is Mode.KANIKO
    with pytest.raises(ValueError, match="not a builder"):
        resolve_mode(Mode.AUTO, caps(), Mode.SYNTHETIC)


def test_probe_cli_help_and_bad_mode():
    help_ = subprocess.run([sys.executable, "-m", "steps.probe", "--help"], cwd=ROOT, capture_output=True, text=True)
    bad = subprocess.run(
        [sys.executable, "-m", "steps.probe", "--mode", "docker"], cwd=ROOT, capture_output=True, text=True
    )
    assert help_.returncode == 0 and "--default-mode" in help_.stdout
    assert bad.returncode == 2 and "--mode" in bad.stderr


@needs_root
def test_fault_launcher_drops_to_the_user_inside_the_limited_namespace():
    script = "id -u; unshare -U true"
    proc = subprocess.run(
        fault_command(["sh", "-c", script], max_user_namespaces=0, user="65534:65534"), capture_output=True, text=True
    )
    assert proc.stdout.split() == ["65534"]
    assert proc.returncode == 1 and "No space left on device" in proc.stderr


@needs_root
def test_fault_launcher_reports_a_signalled_command_like_a_shell():
    proc = subprocess.run(fault_command(["sh", "-c", "kill -9 $$"], max_user_namespaces=0), capture_output=True)
    assert proc.returncode == 128 + 9
