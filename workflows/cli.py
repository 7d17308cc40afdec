"""The `imagegate` command: parses arguments and dispatches to the library.

Each command is registered by one `_add_<command>` function below; its handler imports
the library module it needs lazily (so `imagegate --help` stays fast), calls it, and
prints the typed result. Only `ImagegateError` is caught: it is printed as
`Name: message` plus its hint, and mapped to an exit status in one place, `main`.
Anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from workflows import status_codes
from workflows.errors import ImagegateError, RequestError

Handler = Callable[[argparse.Namespace], int]


def parse_params(pairs: Sequence[str] | None) -> dict[str, str]:
    """`-p NAME=VALUE` pairs into a dict, as `argo submit -p` takes them."""
    params: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RequestError(f"-p {pair!r} is not NAME=VALUE", hint="write e.g. -p destination=registry.example.com/app:1")
        params[name] = value
    return params


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="write the manifests a platform team installs (manifests/)")
    p.add_argument("--out", default="manifests", help="directory to write (default: manifests)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if --out is stale")
    p.add_argument("--config", help="render configuration (YAML): images, secret names, resources")
    p.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    from workflows import render

    report = render.render(out=args.out, check=args.check, config_path=args.config)
    print(report.summary())
    return status_codes.SUCCESS if report.ok else status_codes.FAILED


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the gated build on this machine (--local): real buildah, skopeo, registry")
    p.add_argument("--local", action="store_true", help="run here, driven by the same evaluation as plan (required)")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a workflow parameter, repeated")
    gate = p.add_mutually_exclusive_group()
    gate.add_argument("--approve", action="store_true", help="approve at the gate (needs --approver)")
    gate.add_argument("--reject", action="store_true", help="reject at the gate: nothing is built or pushed")
    p.add_argument("--approver", help="who approves or rejects (recorded in the result)")
    p.add_argument("--reason", default="", help="why, recorded with the decision")
    p.add_argument("--template", help="rendered template YAML (default: manifests/image-build.yaml)")
    p.add_argument("--policy", help="policy ConfigMap as a directory, one file per key (default: local defaults)")
    p.add_argument("--work-dir", help="where run directories go (default: $XDG_CACHE_HOME/imagegate/runs)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="json prints only the final result")
    p.set_defaults(func=_run_local)


def _run_local(args: argparse.Namespace) -> int:
    import getpass
    from pathlib import Path

    from steps.contract import Decision
    from workflows import local, local_progress

    if not args.local:
        raise RequestError("imagegate run needs --local", hint="imagegate run --local CONTEXT builds here")
    if args.approve and not args.approver:
        raise RequestError("--approve needs --approver NAME", hint="say who approves: --approver \"$USER\"")
    approval = None
    if args.approve or args.reject:
        decision = Decision.APPROVE if args.approve else Decision.REJECT
        approver = args.approver or (None if args.approve else getpass.getuser())  # who typed --reject
        approval = local_progress.ApprovalInput(decision=decision, approver=approver, reason=args.reason)
    prompt = local_progress.terminal_prompt(sys.stdin, sys.stderr) if sys.stdin.isatty() else None
    display = local_progress.Display() if args.format == "json" else local_progress.display_for(sys.stderr)
    outcome = local.run(
        Path(args.context),
        parse_params(args.param),
        approval=approval,
        template=Path(args.template) if args.template else local.DEFAULT_TEMPLATE,
        policy_dir=Path(args.policy) if args.policy else None,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        display=display,
        prompt=prompt,
    )
    print(outcome.result.to_json() if args.format == "json" else local.summary(outcome))
    return status_codes.for_status(outcome.result.status)


def _add_registry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="the embedded loopback registry that `run --local` pushes to")
    cmds = p.add_subparsers(dest="registry_command", required=True, metavar="SUBCOMMAND")
    serve = cmds.add_parser("serve", help="run it in the foreground (Ctrl-C stops it), to pull what runs pushed")
    serve.add_argument("--port", type=int, help="127.0.0.1 port to listen on (default: a free one)")
    serve.add_argument("--data-dir", help="storage root (default: $XDG_CACHE_HOME/imagegate/registry)")
    serve.set_defaults(func=_registry_serve)


def _registry_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workflows import registry

    def ready(info: registry.RegistryInfo) -> None:
        print(f"registry: serving {info.url} (data {info.data_dir}); Ctrl-C stops it", flush=True)

    data_dir = Path(args.data_dir) if args.data_dir else None
    return registry.serve(port=args.port, data_dir=data_dir, on_ready=ready)


# Every command registers itself here, in the order `imagegate --help` lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_render,
    _add_run,
    _add_registry,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="imagegate", description="Approval-gated container image builds on Argo Workflows."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except ImagegateError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return status_codes.ERROR


if __name__ == "__main__":
    sys.exit(main())
