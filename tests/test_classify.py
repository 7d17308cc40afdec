"""classify: exact signatures decide the class; only a runtime incompatibility may fall back."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from steps._prefilter import BLOCK, required_literals
from steps.classify import BUILDERS, MAX_LINE, classify_file, classify_lines, load_catalogue, normalise
from steps.contract import FALLBACK_CLASSES, Classification, FailureClass

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(__file__).resolve().parent / "logs"
INDEX = json.loads((LOGS / "index.json").read_text())
CATALOGUE = load_catalogue()
# What classify can emit: every class a signature names, plus the two it decides without one.
EMITTABLE = {s.class_ for s in CATALOGUE.signatures} | {FailureClass.SUCCEEDED, FailureClass.UNCLASSIFIED}
if any(s.runtime_with for s in CATALOGUE.signatures):
    EMITTABLE.add(FailureClass.BUILDER_RUNTIME_UNAVAILABLE)

ENOSYS = "Error during unshare(CLONE_NEWUSER): Function not implemented"
PUSH_401 = "Error writing blob: Error initiating layer upload to /v2/a/blobs/uploads/ in quay.io: unauthorized: denied"


def run_classify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steps.classify", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", sorted(INDEX), ids=lambda n: n.removesuffix(".log"))
def test_sample_log_classifies_as_recorded(name):
    expected = INDEX[name]
    result = classify_file(LOGS / name, expected["exit_code"], expected["builder"])
    assert (result.class_.value, result.signature) == (expected["class"], expected["signature"])
    assert result.fallback_allowed == (result.class_ in FALLBACK_CLASSES)


def test_every_class_classify_can_emit_has_a_sample_log():
    covered = {FailureClass(e["class"]) for e in INDEX.values()}
    assert EMITTABLE - covered == set()


def test_every_sample_log_file_is_indexed_and_every_index_entry_exists():
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted(INDEX)


def test_every_catalogue_entry_matches_a_sample_line():
    lines = [line for p in LOGS.glob("*.log") for raw in p.read_text().splitlines() for line, _ in normalise(raw)]
    unmatched = [s.id for s in CATALOGUE.signatures if not any(re.match(s.pattern, line) for line in lines)]
    assert unmatched == []


def test_catalogue_covers_at_least_thirty_signatures_with_public_sources():
    assert len(CATALOGUE.signatures) >= 30
    assert len({s.id for s in CATALOGUE.signatures}) == len(CATALOGUE.signatures)
    assert all(s.source.startswith("https://") and s.meaning for s in CATALOGUE.signatures)
    referenced = {i for s in CATALOGUE.signatures for i in s.runtime_with}
    assert referenced <= {s.id for s in CATALOGUE.signatures}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            "Error during unshare(CLONE_NEWUSER): No space left on device",
            FailureClass.BUILDER_RUNTIME_UNAVAILABLE,
            id="enospc-from-unshare-is-the-userns-limit",
        ),
        pytest.param(
            "Error: committing container: writing blob: write /var/lib/containers/tmp/1: no space left on device",
            FailureClass.BUILD_ERROR,
            id="enospc-writing-a-layer-is-a-full-disk",
        ),
        pytest.param("no space left on device", FailureClass.UNCLASSIFIED, id="bare-enospc-is-unknown"),
        pytest.param("operation not permitted", FailureClass.UNCLASSIFIED, id="bare-eperm-is-unknown"),
        pytest.param("Function not implemented", FailureClass.UNCLASSIFIED, id="bare-enosys-is-unknown"),
        pytest.param(
            "mkdir /tmp/x: operation not permitted: Error during unshare(CLONE_NEWUSER): Operation not permitted",
            FailureClass.UNCLASSIFIED,
            id="runtime-text-in-the-middle-of-a-line-is-not-anchored",
        ),
    ],
)
def test_matching_uses_anchored_prefixes_not_bare_errno_words(line, expected):
    assert classify_lines([line], exit_code=1).class_ is expected


def test_registry_failure_after_the_build_started_wins_over_a_runtime_signature():
    # GIVEN a runtime message before the build, then a build that ran and a push refused
    log = [ENOSYS, "STEP 1/2: FROM scratch", "STEP 2/2: COPY hello.txt /", "COMMIT a:1", PUSH_401]
    result = classify_lines(log, exit_code=125, builder="buildah")
    assert result.class_ is FailureClass.REGISTRY_AUTH
    assert result.fallback_allowed is False


def test_runtime_signature_wins_over_a_failure_seen_before_the_build_started():
    log = [PUSH_401, ENOSYS]
    result = classify_lines(log, exit_code=1)
    assert result.class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE
    assert result.signature == "userns-unshare-enosys"


def test_daemonless_log_body_counts_as_before_the_build():
    # The buildkitd log after the header may echo build-like lines; its cause is still runtime.
    log = [
        "could not connect to unix:///run/buildkit/buildkitd.sock after 10 trials",
        "========== log ==========",
        "STEP 1/2: FROM scratch",
        "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted",
    ]
    result = classify_lines(log, exit_code=1, builder="buildkit")
    assert result.signature == "rootlesskit-fork-exec-eperm"
    assert result.fallback_allowed is True


def test_a_warning_alone_never_decides():
    log = [
        'time="2026-12-04T10:05:07Z" level=warning msg="Failed, retrying in 2s ... (1/3). Error: initializing source '
        'docker://localhost/x:1: pinging container registry localhost: Get \\"https://localhost/v2/\\": dial tcp '
        '127.0.0.1:443: connect: connection refused"'
    ]
    assert classify_lines(log, exit_code=0).class_ is FailureClass.SUCCEEDED


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [
        pytest.param(0, FailureClass.SUCCEEDED, id="exit-0-is-success"),
        pytest.param(1, FailureClass.UNCLASSIFIED, id="exit-1-unknown"),
        pytest.param(None, FailureClass.UNCLASSIFIED, id="no-exit-code-unknown"),
    ],
)
def test_no_error_lines_classify_by_exit_code_and_unknown_never_falls_back(exit_code, expected):
    result = classify_lines(["STEP 1/1: FROM scratch", "some unexpected output"], exit_code=exit_code)
    assert result.class_ is expected
    assert result.fallback_allowed is False
    assert result.signature is None


def test_exit_code_zero_does_not_hide_a_failure_signature():
    assert classify_lines([ENOSYS], exit_code=0).class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE


def test_builder_filter_ignores_other_builders_signatures():
    kaniko = "kaniko should only be run inside of a container, run with the --force flag if you are sure"
    assert classify_lines([kaniko], exit_code=1, builder="buildah").class_ is FailureClass.UNCLASSIFIED
    assert classify_lines([kaniko], exit_code=1, builder="kaniko").signature == "kaniko-not-in-container"


def test_envelopes_are_removed_before_matching():
    wrapped = [
        "2026-12-04T10:00:00.123456789Z \x1b[31mError during unshare(CLONE_NEWUSER): Operation not permitted\x1b[0m",
        '#7 0.512 time="x" level=error msg="Error during unshare(CLONE_NEWUSER): Invalid argument"',
        "ERRO[0003] Error during unshare(CLONE_NEWUSER): Function not implemented",
    ]
    for line in wrapped:
        assert classify_lines([line], exit_code=1).class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE, line


def test_huge_log_streams_in_constant_memory(tmp_path):
    # GIVEN 200 MB of noise, one line longer than the line limit, then the real cause at the end
    log = tmp_path / "huge.log"
    noise = (b"x" * 199 + b"\n") * 5000
    with log.open("wb") as f:
        f.write(b"y" * (MAX_LINE * 3) + b"\n")
        for _ in range(200):
            f.write(noise)
        f.write(ENOSYS.encode() + b"\n")
    script = (
        "import sys; from pathlib import Path; from steps.classify import classify_file; "
        "r = classify_file(Path(sys.argv[1]), 1); "
        "print(r.signature, Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", script, str(log)], cwd=ROOT, capture_output=True, text=True, check=True)
    signature, max_rss_kib = out.stdout.split()
    assert signature == "userns-unshare-enosys"
    assert int(max_rss_kib) < 100 * 1024  # the file is 200 MB; the process stays far below it


def test_overlong_line_is_matched_on_its_start_and_its_tail_skipped(tmp_path):
    log = tmp_path / "long.log"
    log.write_bytes(ENOSYS.encode() + b" " + b"z" * (MAX_LINE * 2) + b"\nnext line\n")
    assert classify_file(log, 1).signature == "userns-unshare-enosys"


def test_cli_prints_one_classification_and_writes_outputs(tmp_path):
    out = tmp_path / "out"
    log = LOGS / "buildah-rootless-enospc.log"
    proc = run_classify("--log", str(log), "--exit-code", "1", "--builder", "buildah", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    printed = Classification.model_validate_json(proc.stdout)
    assert printed.class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE
    assert json.loads(proc.stdout).keys() == {"class", "fallback_allowed", "signature", "message"}
    assert (out / "class").read_text() == "builder_runtime_unavailable"
    assert (out / "fallback-allowed").read_text() == "true"
    assert Classification.model_validate_json((out / "classification").read_text()) == printed


def test_cli_classifies_a_missing_log_as_unclassified(tmp_path):
    proc = run_classify("--log", str(tmp_path / "absent.log"), "--exit-code", "-1")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["class"], result["fallback_allowed"]) == ("unclassified", False)
    assert "no log at" in result["message"]


def test_cli_classifies_an_unreadable_log_as_unclassified(tmp_path):
    proc = run_classify("--log", str(tmp_path), "--exit-code", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["class"] == "unclassified" and str(tmp_path) in proc.stdout


def test_cli_rejects_an_unknown_builder_with_usage_error():
    proc = run_classify("--log", "x", "--builder", "docker")
    assert proc.returncode == 2
    assert "--builder" in proc.stderr


def test_cli_help_works():
    proc = run_classify("--help")
    assert proc.returncode == 0 and "--exit-code" in proc.stdout


@pytest.mark.parametrize("builder", [None, *sorted(BUILDERS)], ids=lambda b: b or "all")
def test_every_pattern_yields_prefilter_keywords_so_the_fast_path_is_on(builder):
    matcher = CATALOGUE.matcher(builder)
    assert matcher.keywords_before_start is not None and matcher.keywords_after_start is not None
    for s in matcher.signatures:
        assert required_literals(s.pattern), s.id


@pytest.mark.parametrize("name", sorted(INDEX), ids=lambda n: n.removesuffix(".log"))
def test_prefilter_never_changes_a_classification(name):
    expected = INDEX[name]
    lines = (LOGS / name).read_text().splitlines()
    unfiltered = classify_lines(lines, expected["exit_code"], expected["builder"])
    assert classify_file(LOGS / name, expected["exit_code"], expected["builder"]) == unfiltered


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(ENOSYS.encode(), id="plain"),
        pytest.param(b"Error during unshare(CLONE_NEWUSER): \x1b[1mFunction not implemented\x1b[0m", id="ansi-inside"),
        pytest.param(
            b'time="t" level=error msg="Error during unshare(CLONE_NEWUSER): Function not implemented"', id="logrus"
        ),
    ],
)
def test_a_signature_across_a_block_boundary_is_found(tmp_path, line):
    log = tmp_path / "boundary.log"
    pad = BLOCK - len(line) // 2  # the signature line straddles the first block's end
    log.write_bytes(b"n" * (pad - 1) + b"\n" + line + b"\n" + b"tail\n")
    assert classify_file(log, 1).signature == "userns-unshare-enosys"


def test_log_without_final_newline_is_read_to_its_end(tmp_path):
    log = tmp_path / "no-newline.log"
    log.write_bytes(b"STEP 1/1: FROM scratch\n" + PUSH_401.encode())
    assert classify_file(log, 1).class_ is FailureClass.REGISTRY_AUTH


@pytest.mark.parametrize(
    ("after", "signature"),
    [
        pytest.param(b"", "buildah-push-unauthorized", id="cut-line-still-matches-at-its-start"),
        pytest.param(ENOSYS.encode() + b"\n", "userns-unshare-enosys", id="lines-after-it-are-still-read"),
    ],
)
def test_a_line_longer_than_several_blocks_is_cut(tmp_path, after, signature):
    log = tmp_path / "endless.log"
    with log.open("wb") as f:
        f.write(PUSH_401.encode() + b" " + b"z" * (BLOCK * 2 + 123) + b"\n" + after)
    assert classify_file(log, 1).signature == signature
