"""What `run --local` shows while it runs, and how it asks for the approval.

`TreeDisplay` draws the Argo UI's tree on a terminal (one row per node, the running row
redrawn in place, the glyphs `argo get` uses); `LineDisplay` prints one plain line per
change for logs and pipes; the base `Display` shows nothing (`--format json`).
`terminal_prompt` asks a person for the approval decision and a reason, within the
suspend's timeout (after which the gate's default, reject, applies, as in Argo).
"""

from __future__ import annotations

import getpass
import os
import select
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, Field

from steps.contract import Decision

__all__ = [
    "ApprovalInput",
    "Display",
    "LineDisplay",
    "NodeStatus",
    "Prompt",
    "State",
    "TreeDisplay",
    "display_for",
    "terminal_prompt",
]


class State(StrEnum):
    """A node as the display shows it: Argo's phases plus the two it passes through."""

    RUNNING = "Running"
    SUSPENDED = "Suspended"  # the approval is waiting (Argo shows the node Running, with a pause glyph)
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"
    SKIPPED = "Skipped"
    OMITTED = "Omitted"

    @property
    def done(self) -> bool:
        """True for the phases a node ends in."""
        return self not in (State.RUNNING, State.SUSPENDED)


class NodeStatus(BaseModel):
    """One node of a local run."""

    name: str = Field(description="The task name, or the exit handler's template name.")
    template: str
    state: State
    message: str = ""
    exit_handler: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    outputs: dict[str, str] = Field(default_factory=dict, description="Output parameters the node produced.")
    log: Path | None = Field(None, description="The step's stdout and stderr, for nodes that ran a step.")

    @property
    def seconds(self) -> float | None:
        """How long the node ran, once it ended."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ApprovalInput(BaseModel):
    """The approval decision, from the command line or typed at the prompt."""

    decision: Decision
    approver: str | None = Field(None, description="Who decided (the Argo actor label in a cluster).")
    reason: str = ""


Prompt = Callable[[str, dict[str, str], float | None], ApprovalInput | None]
"""Asks a person: (task name, request parameters, timeout in seconds) -> decision, None on timeout."""


class Display:
    """Progress of a run; this base shows nothing (`--format json`)."""

    def begin(self, workflow: str, run_dir: Path) -> None:
        """The run started."""

    def update(self, node: NodeStatus) -> None:
        """A node started, paused or ended."""

    def note(self, text: str) -> None:
        """Anything else worth a line (the registry the run pushes to)."""

    def interrupted(self) -> None:
        """Someone else wrote to the terminal (the approval prompt): do not redraw over it."""


# The glyphs `argo get` prints per phase (cmd/argo/commands/get.go), which the UI mirrors.
_GLYPHS = {
    State.RUNNING: "●", State.SUSPENDED: "ǁ", State.SUCCEEDED: "✔", State.FAILED: "✖",
    State.ERROR: "⚠", State.SKIPPED: "○", State.OMITTED: "○",
}  # fmt: skip
_COLORS = {State.SUCCEEDED: "32", State.FAILED: "31", State.ERROR: "31", State.SUSPENDED: "33", State.RUNNING: "36"}


def _describe(node: NodeStatus) -> str:
    parts = [node.state.value]
    if node.seconds is not None and node.state in (State.SUCCEEDED, State.FAILED, State.ERROR):
        parts.append(f"{node.seconds:.1f}s")
    if node.message:
        parts.append(node.message)
    return "  ".join(parts)


def _label(node: NodeStatus) -> str:
    return f"{node.name} (onExit)" if node.exit_handler else node.name


class LineDisplay(Display):
    """One plain line per change: `probe: Succeeded  0.3s`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def begin(self, workflow: str, run_dir: Path) -> None:  # noqa: D102
        self._print(f"{workflow}: Running  (files in {run_dir})")

    def update(self, node: NodeStatus) -> None:  # noqa: D102
        self._print(f"{_label(node)}: {_describe(node)}")

    def note(self, text: str) -> None:  # noqa: D102
        self._print(text)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class TreeDisplay(LineDisplay):
    """The Argo UI's tree on a terminal: one row per node, the live row redrawn in place."""

    def __init__(self, stream: TextIO, color: bool = True) -> None:
        super().__init__(stream)
        self.color = color
        self._live: str | None = None  # the node whose row is the last line on screen

    def begin(self, workflow: str, run_dir: Path) -> None:  # noqa: D102
        self._print(f" {self._paint(State.RUNNING, _GLYPHS[State.RUNNING])} {workflow}   (files in {run_dir})")

    def update(self, node: NodeStatus) -> None:  # noqa: D102
        branch = " " if node.exit_handler else " ├─"
        row = f"{branch}{self._paint(node.state, _GLYPHS[node.state])} {_label(node):<18} {_describe(node)}"
        if self._live == node.name:
            self.stream.write("\x1b[1A\x1b[2K")  # cursor up a line and clear it: redraw this row
        self._print(row)
        self._live = None if node.state.done else node.name

    def note(self, text: str) -> None:  # noqa: D102
        self._print(f"   {text}")
        self._live = None

    def interrupted(self) -> None:  # noqa: D102
        self._live = None

    def _paint(self, state: State, text: str) -> str:
        code = _COLORS.get(state)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text


def display_for(stream: TextIO) -> Display:
    """The tree on a terminal, plain lines otherwise; NO_COLOR turns colours off (no-color.org)."""
    if stream.isatty():
        return TreeDisplay(stream, color=not os.environ.get("NO_COLOR"))
    return LineDisplay(stream)


_SHOWN = ("context", "dockerfile", "destination", "mode", "strict", "push")


def terminal_prompt(stdin: TextIO, stream: TextIO) -> Prompt:
    """A prompt on the terminal for the decision and a reason, bounded by the suspend's timeout."""
    fd = stdin.fileno()
    pending = b""  # read from the fd itself: a buffered readline would hide lines from select()

    def read(question: str, deadline: float | None) -> str | None:
        nonlocal pending
        stream.write(question)
        stream.flush()
        while b"\n" not in pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                stream.write("\n")
                return None
            chunk = os.read(fd, 4096)
            if not chunk:  # end of input: a last unterminated line counts, nothing at all decides nothing
                if not pending:
                    return None
                pending += b"\n"
            pending += chunk
        line, _, pending = pending.partition(b"\n")
        return line.decode(errors="replace").strip()

    def ask(task: str, params: dict[str, str], timeout: float | None) -> ApprovalInput | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        stream.write(f"   {task}: approve this build?\n")
        for key in _SHOWN:
            if key in params:
                stream.write(f"     {key:<12} {params[key]}\n")
        while True:
            answer = read("   decision [approve/reject] (default reject): ", deadline)
            if answer is None:
                return None
            answer = answer.lower() or Decision.REJECT.value
            if answer in (Decision.APPROVE.value, Decision.REJECT.value):
                break
            stream.write("   type approve or reject\n")
        reason = read("   reason: ", deadline)
        if reason is None:
            return None
        return ApprovalInput(decision=Decision(answer), approver=getpass.getuser(), reason=reason)

    return ask
