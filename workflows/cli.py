"""The `imagegate` command: parses arguments and dispatches to the library.

Each command is registered by one `_add_<command>` function below; its handler imports
the library module it needs lazily (so `imagegate --help` stays fast), calls it, and
prints the typed result. Only `ImagegateError` is caught: it is printed as
`Name: message` plus its hint, and mapped to an exit status in one place, `main`.
Anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from workflows import status_codes
from workflows.errors import ImagegateError, RequestError

Handler = Callable[[argparse.Namespace], int]


def parse_params(pairs: Sequence[str] | None) -> dict[str, str]:
    """`-p NAME=VALUE` pairs into a dict, as `argo submit -p` takes them."""
    params: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RequestError(
                f"-p {pair!r} is not NAME=VALUE", hint="write e.g. -p destination=registry.example.com/app:1"
            )
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


def _add_lint(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lint", help="check rendered Workflow/WorkflowTemplate YAML without a cluster")
    p.add_argument("paths", nargs="+", metavar="PATH", help="YAML files, or directories of them")
    p.add_argument("--format", choices=("text", "json"), default="text", help="json prints the LintReport")
    p.set_defaults(func=_lint)


def _lint(args: argparse.Namespace) -> int:
    from workflows import lint

    report = lint.lint(args.paths)
    print(report.model_dump_json(indent=2) if args.format == "json" else report.summary())
    return status_codes.SUCCESS if report.ok else status_codes.FAILED


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="what a rendered template does for given parameters and task outcomes")
    p.add_argument("template", nargs="?", metavar="TEMPLATE", help="rendered YAML (default: ours)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a workflow parameter, repeated")
    p.add_argument("--outcome", action="append", metavar="TASK=PHASE", help="Succeeded (default), Failed or Error")
    p.add_argument("--output", action="append", metavar="TASK.PARAM=VALUE", help="an output a task writes")
    p.add_argument("--format", choices=("text", "json"), default="text", help="json prints the Plan")
    p.set_defaults(func=_plan)


def _plan(args: argparse.Namespace) -> int:
    from workflows import manifest, plan

    doc = manifest.load_template(args.template or plan.DEFAULT_TEMPLATE)
    outcomes, outputs = plan.parse_outcomes(args.outcome), plan.parse_outputs(args.output)
    result = plan.plan(doc, parse_params(args.param), outcomes, outputs)
    print(result.model_dump_json(indent=2) if args.format == "json" else result.summary())
    return status_codes.SUCCESS


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the gated build on this machine (--local): real buildah, skopeo, registry")
    p.add_argument("--local", action="store_true", help="run here, driven by the same evaluation as plan (required)")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a workflow parameter, repeated")
    gate = p.add_mutually_exclusive_group()
    gate.add_argument("--approve", action="store_true", help="approve at the gate (needs --approver)")
    gate.add_argument("--reject", action="store_true", help="reject at the gate: nothing is built or pushed")
    p.add_argument("--approver", metavar="NAME", help="who approves or rejects (recorded in the result)")
    p.add_argument("--reason", default="", metavar="TEXT", help="why, recorded with the decision")
    p.add_argument("--template", metavar="PATH", help="rendered template YAML (default: manifests/image-build.yaml)")
    p.add_argument("--policy", metavar="DIR", help="policy ConfigMap as a directory, one file per key")
    p.add_argument("--work-dir", metavar="DIR", help="where run directories go (default: the imagegate cache)")
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


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """kubectl/argo connection and output flags, shared by the cluster commands."""
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, then imagegate)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    p.add_argument("--argo-server", help="Argo Server URL; approvals go through it (default: $ARGO_SERVER)")
    p.add_argument("--argo-ui-url", help="Argo UI base URL, for links (default: $ARGO_UI_URL)")
    p.add_argument("-o", "--output", choices=("json", "yaml", "wide"), help="output format")


def _add_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit an image-build run, as argo submit --from workflowtemplate/image-build")
    p.add_argument("-p", "--parameter", action="append", metavar="NAME=VALUE", help="request parameter (repeatable)")
    p.add_argument("-l", "--labels", help="comma-separated NAME=VALUE labels for the Workflow")
    p.add_argument("--request-id", help="idempotency key, e.g. the CI job id (default: derived from the request)")
    p.add_argument("--submitter", help="who asks, when submitting on someone's behalf (default: your identity)")
    p.add_argument("--dry-run", action="store_true", help="print the Workflow, create nothing, read no cluster")
    p.add_argument("--wait", action="store_true", help="then wait as `imagegate wait` does, and exit like it")
    p.add_argument("--timeout", default="24h", help="with --wait: how long to wait (Argo duration, default 24h)")
    _add_cluster_flags(p)
    p.set_defaults(func=_submit)


def _submit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from steps.contract import BuildRequest, Policy, describe_errors
    from workflows.client import default_mode

    params = parse_params(args.parameter)
    labels = parse_params(args.labels.split(",") if args.labels else None)
    timeout = _timeout(args)  # before submitting: a bad --timeout must not leave a run behind
    with _client(args) as client:
        if "mode" not in params:
            params["mode"] = default_mode(Policy() if args.dry_run else client.policy()).value
        try:
            request = BuildRequest.from_parameters(params)
        except ValidationError as exc:
            raise RequestError("; ".join(describe_errors(exc)), hint="fix the -p parameters named above") from None
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        if args.dry_run:
            wf = client.workflow(request, labels=labels, request_id=args.request_id, submitter=args.submitter)
            _print(wf, "json" if args.output == "json" else "yaml", "")
            return status_codes.SUCCESS
        name = client.submit(request, labels=labels, request_id=args.request_id, submitter=args.submitter)
        if not args.wait:
            _print(client.status(name), args.output, name)
            return status_codes.SUCCESS
        print(name, file=sys.stderr)
        return _wait_and_report(client, name, timeout, args.output)


def _add_decide(sub: argparse._SubParsersAction, command: str) -> None:
    p = sub.add_parser(command, help=f"{command} a run waiting at its approval gate (like the Argo UI's resume)")
    p.add_argument("name", help="the Workflow's name")
    p.add_argument("--reason", default="", help="why; recorded in the result's approval block")
    p.add_argument("--approver", help="who decides (default: your identity from the cluster)")
    _add_cluster_flags(p)
    p.set_defaults(func=_decide, decision=command)


def _add_approve(sub: argparse._SubParsersAction) -> None:
    _add_decide(sub, "approve")


def _add_reject(sub: argparse._SubParsersAction) -> None:
    _add_decide(sub, "reject")


def _decide(args: argparse.Namespace) -> int:
    with _client(args) as client:
        decide = client.approve if args.decision == "approve" else client.reject
        approval = decide(args.name, approver=args.approver, reason=args.reason)
    _print(approval, args.output, f"{args.name}: {approval.decision.value} by {approval.approver}")
    return status_codes.SUCCESS


def _add_wait(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wait", help="follow a run (a live task tree) and exit with its outcome's status")
    p.add_argument("name", help="the Workflow's name")
    p.add_argument("--timeout", default="24h", help="how long to wait (Argo duration, default 24h)")
    _add_cluster_flags(p)
    p.set_defaults(func=_wait)


def _wait(args: argparse.Namespace) -> int:
    timeout = _timeout(args)
    with _client(args) as client:
        return _wait_and_report(client, args.name, timeout, args.output)


def _timeout(args: argparse.Namespace) -> float:
    from steps.contract import parse_duration

    try:
        return parse_duration(args.timeout)
    except ValueError as exc:
        raise RequestError(f"--timeout: {exc}") from None


def _wait_and_report(client: Any, name: str, timeout: float, output: str | None) -> int:
    result = client.wait(name, timeout=timeout, on_progress=_LiveTree(sys.stderr))
    approval = f"({result.approval.decision.value} by {result.approval.approver})" if result.approval else None
    summary = " ".join(filter(None, [result.status.value, result.image, result.digest, approval]))
    _print(result, output, summary)
    return status_codes.for_status(result.status)


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="a run's tasks, approval and result")
    p.add_argument("name", help="the Workflow's name")
    _add_cluster_flags(p)
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        run = client.status(args.name)
    _print(run, args.output, run.tree(wide=args.output == "wide"))
    return status_codes.SUCCESS


def _add_approvals(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("approvals", help="runs waiting for an approval in the namespace")
    _add_cluster_flags(p)
    p.set_defaults(func=_approvals)


def _approvals(args: argparse.Namespace) -> int:
    with _client(args) as client:
        pending = client.pending_approvals()
    columns = ["name", "submitter", "destination", "waiting_since"] + (["ui_url"] if args.output == "wide" else [])
    rows = [[c.upper() for c in columns]] + [[str(getattr(p, c) or "-") for c in columns] for p in pending]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    table = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    _print(pending, args.output, table)
    return status_codes.SUCCESS


def _client(args: argparse.Namespace) -> Any:
    from workflows.client import Client, ClusterConfig

    return Client(
        ClusterConfig.from_env(
            kubeconfig=args.kubeconfig,
            context=args.context,
            namespace=args.namespace,
            argo_server=args.argo_server,
            ui_url=args.argo_ui_url,
        )
    )


def _print(value: Any, output: str | None, text: str) -> None:
    """`-o json|yaml` prints the model (or list of models) as data; anything else prints `text`."""
    if output not in ("json", "yaml"):
        print(text)
        return
    items = value if isinstance(value, list) else [value]
    data = [v.model_dump(mode="json", by_alias=True) if hasattr(v, "model_dump") else v for v in items]
    data = data if isinstance(value, list) else data[0]
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")


class _LiveTree:
    """Draws a run's task tree on each change: redrawn in place on a terminal, appended in CI logs."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.last = ""

    def __call__(self, run: Any) -> None:
        text = run.tree()
        if text == self.last:
            return
        if self.last and self.stream.isatty():
            self.stream.write(f"\x1b[{self.last.count(chr(10)) + 1}F\x1b[J")  # cursor up, clear below
        self.stream.write(text + "\n")
        self.stream.flush()
        self.last = text


# Every command registers itself here, in the order `imagegate --help` lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_render,
    _add_lint,
    _add_plan,
    _add_run,
    _add_registry,
    _add_submit,
    _add_approve,
    _add_reject,
    _add_wait,
    _add_status,
    _add_approvals,
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
