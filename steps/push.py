"""Step `push`: copy the built image to the registry with skopeo and prove the registry has it.

Usage::

    python -m steps.push --archive /workspace/image.oci.tar --destination registry.example.com/team/app:1
        [--insecure] [--cert-dir DIR] [--request JSON] [--approval JSON] [--builder NAME]
        [--attempts N] [--backoff SECONDS] [--timeout SECONDS] [--log PATH] [--out DIR]

Reads:
    --archive SRC       what to copy: a path (an OCI archive file, or an OCI layout directory) or a
                        transport-qualified reference (`oci-archive:PATH`, `oci:PATH`, `docker://REF`).
                        Default steps.contract.ARCHIVE_PATH.
    --destination REF   where to push (host[:port]/path:tag); defaults to the request's destination.
    --request JSON      the canonical BuildRequest (validate's `request` output); optional.
    --approval JSON     the Approval record to carry into the result; optional.
    --builder NAME      what built the archive (kaniko, buildkit, buildah; default buildah).
    --insecure          no TLS verification for the destination (only for hosts the policy lists
                        in insecureRegistries; validate's `insecure` output). Verification is on otherwise.
    --src-insecure      the same for a docker:// source.
    --cert-dir DIR      extra CA certificates for the destination (skopeo --dest-cert-dir).
    --attempts N        tries for transient failures (connection refused, 5xx, timeouts), default 4.
    --backoff SECONDS   first retry delay, doubled per retry up to 30 s, default 2.
    --timeout SECONDS   one skopeo call may take this long before it counts as a transient failure.
    --log PATH          also write skopeo's full output there.
    REGISTRY_AUTH_FILE  env: the docker config.json with the push credentials (the mounted Secret);
                        skopeo reads it itself.

Writes into --out (names from steps.contract.STEPS["push"]):
    result          the BuildResult: succeeded with the verified digest, or failed with its classification.
    digest, IMAGE_DIGEST   the digest the registry serves for the destination (empty on failure).
    image-url, IMAGE_URL   the destination as pushed (empty on failure).
    classification  the Classification of the failure (empty on success).

A push succeeds only when skopeo exited 0, wrote a digest, and the manifest the registry
serves for the destination hashes to that same digest (so the credentials must allow pulling
the destination, too). Exit 0 on success, 1 on a failed push, 2 on bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ValidationError

from steps._io import add_common_args, write_outputs
from steps.classify import classify_lines
from steps.contract import (
    ARCHIVE_PATH,
    TRANSIENT_CLASSES,
    Approval,
    Builder,
    BuildRequest,
    BuildResult,
    Classification,
    FailureClass,
    PushSkippedReason,
    Status,
    describe_errors,
    parse_reference,
)
from steps.errors import InputError

__all__ = ["Attempts", "PushOutcome", "main", "push"]

STEP = "push"
MAX_BACKOFF = 30.0
_TRANSPORTS = ("oci-archive:", "oci:", "docker://", "dir:", "docker-archive:")


class Attempts(BaseModel):
    """How hard to try: transient failures are retried with exponential backoff, within a bound."""

    attempts: int = 4
    backoff: float = 2.0
    timeout: float = 600.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return min(self.backoff * 2 ** (retry - 1), MAX_BACKOFF)


class PushOutcome(BaseModel):
    """A verified digest, or the classification of why there is none."""

    digest: str | None = None
    classification: Classification | None = None
    log: str = ""


def source_reference(source: str) -> str:
    """A transport-qualified skopeo source: a bare path becomes oci-archive: (file) or oci: (directory)."""
    if source.startswith(_TRANSPORTS):
        return source
    return f"oci:{source}" if Path(source).is_dir() else f"oci-archive:{source}"


def _tls(flag: str, insecure: bool) -> str:
    return f"{flag}={'false' if insecure else 'true'}"


def _run(argv: list[str], timeout: float, log: list[str]) -> subprocess.CompletedProcess[bytes] | None:
    """Run one skopeo call; None when it ran out of time (killed)."""
    log.append(f"+ {' '.join(argv)}\n")
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        log.append((exc.stderr or b"").decode(errors="replace"))
        log.append(f"Error: {argv[0]} {argv[1]} timed out after {timeout:.0f}s\n")
        return None
    except FileNotFoundError:
        log.append(f"Error: {argv[0]}: executable file not found in $PATH\n")
        return subprocess.CompletedProcess(argv, 127, b"", b"")
    log.append(proc.stderr.decode(errors="replace"))
    return proc


def _timed_out(argv: list[str], timeout: float) -> Classification:
    return Classification(
        class_=FailureClass.REGISTRY_UNREACHABLE,
        fallback_allowed=False,
        message=f"{argv[0]} {argv[1]} did not finish within {timeout:.0f}s",
    )


def _with_retries(argv: list[str], attempts: Attempts, log: list[str]) -> tuple[bytes | None, Classification | None]:
    """Run argv until it succeeds, fails for good, or the attempts run out; (stdout, failure)."""
    failure: Classification | None = None
    for attempt in range(1, attempts.attempts + 1):
        if attempt > 1:
            delay = attempts.delay(attempt - 1)
            log.append(f"retrying in {delay:.1f}s (attempt {attempt}/{attempts.attempts}): {failure.message}\n")
            time.sleep(delay)
        proc = _run(argv, attempts.timeout, log)
        if proc is not None and proc.returncode == 0:
            return proc.stdout, None
        if proc is None:
            failure = _timed_out(argv, attempts.timeout)
        else:
            failure = classify_lines(proc.stderr.decode(errors="replace").splitlines(), exit_code=proc.returncode,
                                     builder="skopeo")
            if failure.class_ is FailureClass.SUCCEEDED:  # non-zero exit without a recognisable error line
                failure = Classification(class_=FailureClass.UNCLASSIFIED, fallback_allowed=False,
                                         message=f"{argv[0]} {argv[1]} exited {proc.returncode}")
        if failure.class_ not in TRANSIENT_CLASSES:
            break
    return None, failure


def push(
    source: str,
    destination: str,
    *,
    insecure: bool = False,
    src_insecure: bool = False,
    cert_dir: Path | None = None,
    attempts: Attempts | None = None,
) -> PushOutcome:
    """Copy `source` to `destination` and return the digest the registry verifiably serves."""
    attempts = attempts or Attempts()
    log: list[str] = []
    src = source_reference(source)
    dest_flags = [_tls("--dest-tls-verify", insecure)] + (["--dest-cert-dir", str(cert_dir)] if cert_dir else [])
    src_flags = [_tls("--src-tls-verify", src_insecure)] if src.startswith("docker://") else []
    with tempfile.TemporaryDirectory(prefix="imagegate-push-") as scratch:
        digest_file = Path(scratch) / "digest"
        copy = ["skopeo", "copy", "--digestfile", str(digest_file), *src_flags, *dest_flags,
                src, f"docker://{destination}"]
        _, failure = _with_retries(copy, attempts, log)
        if failure:
            return PushOutcome(classification=failure, log="".join(log))
        pushed = digest_file.read_text().strip() if digest_file.is_file() else ""
    if not pushed.startswith("sha256:"):
        return PushOutcome(log="".join(log), classification=Classification(
            class_=FailureClass.UNCLASSIFIED, fallback_allowed=False,
            message=f"skopeo copy exited 0 but wrote no digest for {destination}: the push is not proven"))
    # Read the manifest back and hash its bytes ourselves: the registry must serve what we pushed.
    inspect = ["skopeo", "inspect", "--raw", _tls("--tls-verify", insecure),
               *(["--cert-dir", str(cert_dir)] if cert_dir else []), f"docker://{destination}"]
    raw, failure = _with_retries(inspect, attempts, log)
    if failure or raw is None:
        return PushOutcome(classification=failure, log="".join(log))
    served = "sha256:" + hashlib.sha256(raw).hexdigest()
    if served != pushed:
        return PushOutcome(log="".join(log), classification=Classification(
            class_=FailureClass.REGISTRY_REJECTED, fallback_allowed=False,
            message=f"the registry serves {served} for {destination}, but the push wrote {pushed}"))
    log.append(f"verified: {destination} serves {served}\n")
    return PushOutcome(digest=served, log="".join(log))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m steps.push", description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", default=ARCHIVE_PATH, help="the OCI archive (or a transport:reference) to copy")
    p.add_argument("--destination", help="image reference to push to (default: the request's destination)")
    p.add_argument("--request", help="the canonical BuildRequest JSON")
    p.add_argument("--approval", help="the Approval JSON to carry into the result")
    p.add_argument("--builder", default=Builder.BUILDAH.value, choices=[b.value for b in Builder if b is not
                                                                       Builder.SYNTHETIC])
    p.add_argument("--insecure", action="store_true", help="no TLS verification for the destination")
    p.add_argument("--src-insecure", action="store_true", help="no TLS verification for a docker:// source")
    p.add_argument("--cert-dir", type=Path, help="extra CA certificates for the destination")
    p.add_argument("--attempts", type=int, default=Attempts().attempts, help="tries for transient failures")
    p.add_argument("--backoff", type=float, default=Attempts().backoff, help="first retry delay in seconds")
    p.add_argument("--timeout", type=float, default=Attempts().timeout, help="seconds one skopeo call may take")
    p.add_argument("--log", type=Path, help="also write skopeo's output here")
    add_common_args(p)
    return p


def _inputs(args: argparse.Namespace) -> tuple[str, Approval | None]:
    try:
        request = BuildRequest.model_validate_json(args.request) if args.request else None
        approval = Approval.model_validate_json(args.approval) if args.approval else None
    except ValidationError as exc:
        raise InputError("; ".join(describe_errors(exc))) from None
    destination = args.destination or (request.destination if request else None)
    if not destination:
        raise InputError("--destination: give the image reference to push to (or --request with a destination)")
    if request and args.destination and request.destination != args.destination:
        raise InputError(f"--destination {args.destination!r} differs from the request's {request.destination!r}")
    try:
        parse_reference(destination)
    except ValueError as exc:
        raise InputError(f"--destination: {exc}") from None
    if args.attempts < 1:
        raise InputError("--attempts must be at least 1")
    return destination, approval


def main(argv: list[str] | None = None) -> int:
    """Push, verify, write the outputs; exit 0 only for a verified push."""
    args = _parser().parse_args(argv)
    try:
        destination, approval = _inputs(args)
    except InputError as exc:
        print(f"push: {exc}", file=sys.stderr)
        return 2
    outcome = push(
        args.archive, destination, insecure=args.insecure, src_insecure=args.src_insecure, cert_dir=args.cert_dir,
        attempts=Attempts(attempts=args.attempts, backoff=args.backoff, timeout=args.timeout),
    )
    sys.stderr.write(outcome.log)
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text(outcome.log)
    if outcome.digest:
        result = BuildResult(status=Status.SUCCEEDED, builder=Builder(args.builder), image=destination,
                             digest=outcome.digest, approval=approval, message=f"pushed {destination}@{outcome.digest}")
        write_outputs(STEP, args.out, {
            "result": result.to_json(), "digest": outcome.digest, "IMAGE_DIGEST": outcome.digest,
            "image-url": destination, "IMAGE_URL": destination, "classification": "",
        })
        print(result.to_json())
        return 0
    assert outcome.classification is not None
    result = BuildResult(status=Status.FAILED, builder=Builder(args.builder), image=destination,
                         push_skipped_reason=PushSkippedReason.FAILED, classification=outcome.classification,
                         approval=approval, message=f"push to {destination} failed: {outcome.classification.message}")
    write_outputs(STEP, args.out, {
        "result": result.to_json(), "digest": "", "IMAGE_DIGEST": "", "image-url": "", "IMAGE_URL": "",
        "classification": outcome.classification.to_json(),
    })
    print(result.to_json())
    return 1


if __name__ == "__main__":
    sys.exit(main())
