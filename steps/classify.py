"""Step `classify`: what a failed build's (or push's) log means, from a catalogue of exact signatures.

Reads:
    --log FILE        the builder's log (stdout+stderr); read as a stream, any size, constant memory.
                      A missing file classifies like an empty log.
    --exit-code N     the builder's exit code, if known (Argo's default "-1" means it wrote none).
    --builder NAME    limit the catalogue to one builder's family: buildah (runner), podman,
                      skopeo, kaniko or buildkit. Default: every signature.
    --out DIR         optional: write the classify outputs of steps.contract.STEPS there.

Writes:
    stdout            one steps.contract.Classification as JSON:
                      {"class", "fallback_allowed", "signature", "message"}.
    DIR/class, DIR/fallback-allowed (true/false), DIR/classification (the JSON) with --out.
    Exit status 0 whenever a classification was made (the class is data, not an error).

The catalogue is steps/signatures.json: one entry per signature with its builder, a regex
anchored with ^ on a normalised line, its class, meaning and public source. Each raw line is
normalised first (ANSI colour, a leading RFC 3339 timestamp, the logrus `time=.. level=.. msg=".."`
envelope, kaniko's `WARN[0000]` and BuildKit's `#12 0.345` prefixes removed), then the first
catalogue entry whose pattern matches names it. Matching whole anchored prefixes (never a bare
errno text) is what tells `Error during unshare(CLONE_NEWUSER): No space left on device` (the
user-namespace limit) from `write /big.bin: no space left on device` (a full disk).

Deciding, in this order (../shared/research/builders.md section 3.5):
1. a non-runtime failure seen after the build started (a `STEP 1/2:`-like line) wins, so a push
   that is refused after a build ran is never mistaken for a runtime problem;
2. else the first runtime signature (builder_runtime_unavailable, the only fallback class);
3. else the first other failure;
4. else a wrapper message without a cause (class unclassified, e.g. buildctl-daemonless.sh's
   `could not connect ... after N trials`; the buildkitd log after its `========== log ==========`
   header is classified like any other lines, as the phase before the build);
5. nothing matched: `succeeded` when the exit code is 0, `unclassified` otherwise. Unknown never
   falls back.
Entries with role `context` never decide alone; `runtime_with` turns a conditional entry into a
runtime one when one of the named entries was seen (idmap-insufficient-ids after
`falling back to single mapping`).

Speed: classify_file reads the log in 1 MiB blocks and normalises and matches only the lines
that hold a keyword derived from the catalogue's regexes (steps._prefilter: exact, or off), so a
200 MB log costs about a third of a `grep -E` over the same patterns, in flat memory.

Library: `classify_lines(lines, exit_code, builder)` (every line matched) and
`classify_file(path, exit_code, builder)` return a Classification; the push step reuses them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from steps._io import write_outputs
from steps._prefilter import candidate_lines, keywords
from steps.contract import FALLBACK_CLASSES, Classification, FailureClass

__all__ = ["Catalogue", "Signature", "classify_file", "classify_lines", "load_catalogue", "main"]

CATALOGUE_PATH = Path(__file__).with_name("signatures.json")
# A longer line is matched on its first MAX_LINE bytes only; the rest is skipped, so one
# endless line (a progress bar without newlines) cannot grow memory.
MAX_LINE = 64 * 1024
_MESSAGE_CHARS = 2000
# Families: a builder's log can carry messages of the libraries it is built on
# (containers/image and containers/storage are shared by buildah, podman and skopeo).
_FAMILIES = {
    "buildah": {"buildah", "podman", "containers"},
    "runner": {"buildah", "podman", "containers"},
    "podman": {"buildah", "podman", "containers"},
    "skopeo": {"containers"},
    "kaniko": {"kaniko"},
    "buildkit": {"buildkit"},
}
BUILDERS = sorted(_FAMILIES)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)\s+")
_LOGRUS = re.compile(r'^(?:time="[^"]*"\s+)?level=(?P<level>\w+)\s+msg="(?P<msg>(?:[^"\\]|\\.)*)"')
_LEVEL_TAG = re.compile(r"^(?P<tag>INFO|WARN|ERRO|FATA|DEBU|TRAC|PANI)\[\d+\]\s+")
_QUIET_LEVELS = {"warning", "warn", "info", "debug", "trace"}
_QUIET_TAGS = {"WARN", "INFO", "DEBU", "TRAC"}
_BULLET = re.compile(r"^\* ")  # Go multierror: "3 errors occurred:" then "\t* ..." per error
_BUILDKIT_STEP = re.compile(r"^#\d+ (?:\d+\.\d+ )?")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


class Role(StrEnum):
    """Whether a signature decides a class (`cause`) or only conditions another (`context`)."""

    CAUSE = "cause"
    CONTEXT = "context"


class Signature(BaseModel):
    """One catalogue entry: an exact log signature and what it means."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    builder: str = Field(description="buildah, podman, containers, buildkit, kaniko or any.")
    pattern: str = Field(description="Python regex anchored with ^ on a normalised line.")
    class_: FailureClass = Field(alias="class")
    meaning: str
    source: str = Field(pattern=r"^https://", description="Public page where the message was reported or is printed.")
    role: Role = Role.CAUSE
    runtime_with: list[str] = Field(default_factory=list, description="Ids that make this a runtime failure when seen.")

    @field_validator("pattern")
    @classmethod
    def _anchored(cls, v: str) -> str:
        if not v.startswith("^"):
            raise ValueError("a signature pattern is anchored: start it with ^")
        compiled = re.compile(v)
        if compiled.groupindex:
            raise ValueError("use (?:...) groups: named groups would clash in the combined pattern")
        return v


class Catalogue(BaseModel):
    """steps/signatures.json: the signatures plus the markers of the build phase."""

    model_config = ConfigDict(extra="forbid")

    comment: str = ""
    build_started: list[str] = Field(description="Patterns of lines that show the build itself has begun.")
    daemonless_log_header: str = Field(description="buildctl-daemonless.sh's header before the buildkitd log.")
    signatures: list[Signature]

    def matcher(self, builder: str | None) -> _Matcher:
        """A compiled matcher over the entries that apply to `builder` (None: all)."""
        family = _FAMILIES[builder] | {"any"} if builder else None
        chosen = [s for s in self.signatures if family is None or s.builder in family]
        return _Matcher(chosen, self.build_started, self.daemonless_log_header)


class _Matcher:
    """All patterns in one alternation: one regex pass per line names the first matching entry."""

    def __init__(self, signatures: list[Signature], build_started: list[str], header: str) -> None:
        self.signatures = signatures
        self.combined = re.compile("|".join(f"(?P<s{i}>{s.pattern})" for i, s in enumerate(signatures)))
        self.started = re.compile("|".join(f"(?:{p})" for p in build_started))
        self.header = header
        # What a line must contain to be worth matching (steps._prefilter); None: every line.
        patterns = [s.pattern for s in signatures]
        self.keywords_after_start = keywords(patterns, [header])
        self.keywords_before_start = keywords(patterns + build_started, [header])

    def match(self, line: str) -> Signature | None:
        m = self.combined.match(line)
        return self.signatures[int(m.lastgroup[1:])] if m else None


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    """The signature catalogue, validated."""
    return Catalogue.model_validate_json(path.read_bytes())


def _unescape(msg: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), msg)


def normalise(raw: str, warning: bool = False) -> Iterator[tuple[str, bool]]:
    """The messages in one raw log line, envelopes removed, each with whether it is a warning.

    A logrus msg may hold several lines; `level=warning`/`WARN[0000]` and lower mark warnings,
    which never decide a class on their own (buildah's `Failed, retrying ...` quotes the error
    it will retry).
    """
    line = _BUILDKIT_STEP.sub("", _TIMESTAMP.sub("", _ANSI.sub("", raw).strip()))
    m = _LOGRUS.match(line)
    if m:
        quiet = warning or m["level"] in _QUIET_LEVELS
        for part in _unescape(m["msg"]).splitlines():
            yield from normalise(part, quiet)
        return
    tag = _LEVEL_TAG.match(line)
    if tag:
        warning = warning or tag["tag"] in _QUIET_TAGS
        line = line[tag.end() :]
    line = _BULLET.sub("", line.strip())
    if line:
        yield line, warning


class _Found:
    """The first line each cause entry matched, and whether it came after the build started."""

    __slots__ = ("after_start", "line", "signature")

    def __init__(self, signature: Signature, line: str, after_start: bool) -> None:
        self.signature, self.line, self.after_start = signature, line, after_start


class _Scan:
    """The streaming state: the build phase and the first hit per entry (bounded by the catalogue)."""

    def __init__(self, matcher: _Matcher) -> None:
        self.matcher = matcher
        self.found: dict[str, _Found] = {}
        self.seen: set[str] = set()
        self.started = self.in_daemon_log = False

    def keywords(self) -> list[bytes] | None:
        """What a line must contain to matter now (build-start markers only until the build started)."""
        return self.matcher.keywords_after_start if self.started else self.matcher.keywords_before_start

    def feed(self, raw: str) -> None:
        """Take one raw log line (carriage returns split it further)."""
        for segment in raw.split("\r"):
            for line, warning in normalise(segment):
                self._take(line, warning)

    def _take(self, line: str, warning: bool) -> None:
        if line == self.matcher.header:
            self.in_daemon_log = True  # buildkitd's own log: before any build, whatever it prints
            return
        if not self.in_daemon_log and not self.started and self.matcher.started.match(line):
            self.started = True
        signature = self.matcher.match(line)
        if signature is None:
            return
        self.seen.add(signature.id)
        if signature.role is Role.CAUSE and not warning and signature.id not in self.found:
            self.found[signature.id] = _Found(signature, line, self.started and not self.in_daemon_log)

    def result(self, exit_code: int | None) -> Classification:
        """The decision over everything fed so far."""
        return _decide(list(self.found.values()), self.seen, exit_code)


def _scan(builder: str | None) -> _Scan:
    if builder is not None and builder not in _FAMILIES:
        raise ValueError(f"builder {builder!r} is unknown: use one of {', '.join(BUILDERS)}")
    return _Scan(load_catalogue().matcher(builder))


def classify_lines(lines: Iterable[str], exit_code: int | None = None, builder: str | None = None) -> Classification:
    """Classify a log given as raw lines (streamed; only the first hit per entry is kept).

    Args:
        lines: raw log lines, with or without newlines.
        exit_code: the builder's exit code; None when unknown.
        builder: a key of the builder families (buildah, runner, podman, skopeo, kaniko, buildkit) or None.

    Returns:
        The classification; `succeeded` only for exit code 0 with no failure signature.
    """
    scan = _scan(builder)
    for raw in lines:
        scan.feed(raw)
    return scan.result(exit_code)


def _class_of(signature: Signature, seen: set[str]) -> FailureClass:
    if signature.runtime_with and seen.intersection(signature.runtime_with):
        return FailureClass.BUILDER_RUNTIME_UNAVAILABLE
    return signature.class_


def _decide(found: list[_Found], seen: set[str], exit_code: int | None) -> Classification:
    weak = [f for f in found if _class_of(f.signature, seen) is FailureClass.UNCLASSIFIED]
    strong = [f for f in found if f not in weak]
    runtime = [f for f in strong if _class_of(f.signature, seen) in FALLBACK_CLASSES]
    failures = [f for f in strong if f not in runtime]
    chosen = next(
        iter([f for f in failures if f.after_start] or runtime or failures or weak),
        None,
    )
    if chosen is not None:
        cls = _class_of(chosen.signature, seen)
        return Classification(
            class_=cls,
            fallback_allowed=cls in FALLBACK_CLASSES,
            signature=chosen.signature.id,
            message=chosen.line[:_MESSAGE_CHARS],
        )
    if exit_code == 0:
        return Classification(class_=FailureClass.SUCCEEDED, fallback_allowed=False, message="exit code 0")
    why = f"exit code {exit_code}" if exit_code is not None else "no exit code"
    return Classification(
        class_=FailureClass.UNCLASSIFIED,
        fallback_allowed=False,
        message=f"{why} and no known signature in the log: a failure, never a fallback",
    )


def classify_file(path: Path, exit_code: int | None = None, builder: str | None = None) -> Classification:
    """Classify the log at `path`, streaming it; a missing or unreadable file counts as what was read of it."""
    scan = _scan(builder)
    try:
        with path.open("rb", buffering=0) as stream:
            for raw in candidate_lines(stream, scan.keywords, MAX_LINE):
                scan.feed(raw)
    except OSError as exc:
        result = scan.result(exit_code)
        problem = f"no log at {path}" if isinstance(exc, FileNotFoundError) else f"log {path}: {exc.strerror}"
        return result if result.signature else result.model_copy(update={"message": f"{problem}; {result.message}"})
    return scan.result(exit_code)


def _exit_code(text: str) -> int | None:
    text = text.strip()
    if text in ("", "-1"):  # Argo's default when the build step wrote no exit-code
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--exit-code {text!r} is not an integer") from None


def main(argv: list[str] | None = None) -> int:
    """Classify one log and print (and optionally write) the Classification."""
    parser = argparse.ArgumentParser(prog="python -m steps.classify", description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="the build or push log")
    parser.add_argument("--exit-code", type=_exit_code, default=None, help="the builder's exit code")
    parser.add_argument("--builder", choices=BUILDERS, help="only this builder's signatures")
    parser.add_argument("--out", type=Path, help="also write the outputs class, fallback-allowed, classification here")
    args = parser.parse_args(argv)
    result = classify_file(args.log, args.exit_code, args.builder)
    if args.out is not None:
        write_outputs(
            "classify",
            args.out,
            {
                "class": result.class_.value,
                "fallback-allowed": json.dumps(result.fallback_allowed),
                "classification": result.to_json(),
            },
        )
    print(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
