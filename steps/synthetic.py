"""Step `synthetic`: the deterministic, clearly marked result for a build the node could not run.

Reads:
    --request JSON         the canonical BuildRequest (validate's `request` output).
    --classification JSON  classify's Classification of the failed build; it must allow the
                           fallback (class builder_runtime_unavailable), else the step refuses.
                           May be omitted only for a request with mode=synthetic, which asks for
                           no build at all.
    --approval JSON        optional: the Approval record to carry.
    --fallback VALUE       optional: validate's `fallback` output; `forbidden` refuses.
    --workspace DIR        where the workspace volume is mounted (default steps.contract.WORKSPACE_DIR);
                           a local context (relative, or /workspace/...) is read from there.
    --out DIR              output directory (default steps.contract.OUTPUT_DIR or $IMAGEGATE_OUT).

Writes:
    DIR/result   steps.contract.BuildResult JSON: status synthetic, builder synthetic,
                 simulated true, push_skipped_reason builder_runtime_unavailable, image = the
                 destination, the synthetic digest, the classification and approval (also printed).
    DIR/digest   the synthetic digest, `sha256:<hex>`.
    Exit status 0 with a result; 1, writing nothing, when it refuses (a classification that does
    not allow the fallback, a strict request, fallback forbidden) or cannot read the context.

The digest is sha256 of the canonical JSON
`{"context": <hash or null>, "format": "imagegate-synthetic/v1", "request": <request>}`,
where the context hash (steps.context_hash) covers a local directory or tar archive's sorted
paths, types, symlink targets, executable/set-id bits and contents, never times or owners: the
same request gives the same digest on any machine, and any change to the context changes it.
A remote context (git://, https://) is not fetched; only the request is hashed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from steps._io import add_common_args, write_outputs
from steps.context_hash import hash_context
from steps.contract import (
    WORKSPACE_DIR,
    Approval,
    Builder,
    BuildRequest,
    BuildResult,
    Classification,
    FailureClass,
    Mode,
    PushSkippedReason,
    Status,
    describe_errors,
)
from steps.errors import InputError, StepError

__all__ = ["Refused", "synthesize", "synthetic_digest", "main"]

FORMAT = "imagegate-synthetic/v1"
_M = TypeVar("_M", bound=BaseModel)


class Refused(StepError):
    """The request or its classification does not allow a synthetic result."""


def synthetic_digest(request: BuildRequest, workspace: Path) -> str:
    """The deterministic digest of `request` and its context's content."""
    path = request.context_path(workspace)
    content = None
    if path is not None:
        if not path.exists():
            raise InputError(
                f"context {request.context!r} is not in the workspace {workspace}: mount it or pass --workspace"
            )
        import tarfile

        try:
            content = hash_context(path)
        except (OSError, tarfile.TarError) as exc:
            raise InputError(f"context {request.context!r}: cannot read it ({exc})") from exc
    # by_alias spelled out: the digest must not depend on a pydantic version's serialisation default.
    canonical = json.dumps(
        {"context": content, "format": FORMAT, "request": request.model_dump(mode="json", by_alias=True)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _requested_synthetic(request: BuildRequest) -> Classification:
    # mode=synthetic asks for no build: the contract's synthetic result carries this class.
    return Classification(
        class_=FailureClass.BUILDER_RUNTIME_UNAVAILABLE,
        fallback_allowed=True,
        signature=None,
        message=f"mode=synthetic requested for {request.destination}: no builder ran",
    )


def synthesize(
    request: BuildRequest,
    classification: Classification | None,
    *,
    workspace: Path,
    approval: Approval | None = None,
    fallback: str | None = None,
) -> BuildResult:
    """The synthetic BuildResult, or Refused when this request may not have one."""
    if classification is None:
        if request.mode != Mode.SYNTHETIC:
            raise Refused("--classification is required: a synthetic result stands in for a classified failure")
        classification = _requested_synthetic(request)
    if not classification.fallback_allowed:  # the model keeps it true only for FALLBACK_CLASSES
        raise Refused(
            f"classification {classification.class_.value} does not allow a synthetic fallback "
            f"(signature {classification.signature}): the run fails with this class"
        )
    if request.strict:
        raise Refused("the request is strict: a runtime incompatibility fails the run instead of a synthetic result")
    if fallback == "forbidden":
        raise Refused("validate decided fallback=forbidden (policy allowSynthetic=false or strict): the run fails")
    digest = synthetic_digest(request, workspace)
    return BuildResult(
        status=Status.SYNTHETIC,
        builder=Builder.SYNTHETIC,
        simulated=True,
        image=request.destination,
        digest=digest,
        push_skipped_reason=PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE,
        classification=classification,
        approval=approval,
        message=(
            "synthetic result: nothing was built or pushed; the digest is derived from the request and its "
            "context, not from an image"
        ),
    )


def _parse(model: type[_M], text: str, flag: str) -> _M:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise InputError(f"{flag}: " + "; ".join(describe_errors(exc))) from None


def main(argv: list[str] | None = None) -> int:
    """Write the synthetic result, or refuse with a reason."""
    parser = argparse.ArgumentParser(prog="python -m steps.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, help="the canonical BuildRequest JSON")
    parser.add_argument("--classification", help="classify's Classification JSON")
    parser.add_argument("--approval", help="the Approval JSON")
    parser.add_argument("--fallback", choices=["allowed", "forbidden"], help="validate's fallback output")
    parser.add_argument("--workspace", type=Path, default=Path(WORKSPACE_DIR), help="the workspace volume")
    add_common_args(parser)
    args = parser.parse_args(argv)
    try:
        request = _parse(BuildRequest, args.request, "--request")
        classification = (
            _parse(Classification, args.classification, "--classification") if args.classification else None
        )
        approval = _parse(Approval, args.approval, "--approval") if args.approval else None
        result = synthesize(
            request, classification, workspace=args.workspace, approval=approval, fallback=args.fallback
        )
    except StepError as exc:
        print(f"synthetic: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    write_outputs("synthetic", args.out, {"result": result.to_json(), "digest": result.digest})
    print(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
