"""Skip log lines that cannot match: literal keywords derived from the catalogue's regexes.

A huge log is mostly noise. Instead of normalising and matching every line in Python,
classify reads the log in large blocks and lets `bytes.find` (C, fast) look for keywords:
for each pattern a set of literals at least one of which every match contains, derived
from the regex's parse tree. Only the lines holding a keyword go through the full path.
The derivation is exact or it gives up (returns None), and then every line is a candidate:
the prefilter can make classify faster, never different.

Raw lines carry envelopes the keywords do not see past (logrus escapes quotes and backslashes, ANSI
colour codes can split words), so keywords never contain quote, backslash or whitespace
other than a space, and a block holding an escape character is passed through whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from re import _constants as sre
from re import _parser as sre_parse
from typing import Any, BinaryIO

__all__ = ["BLOCK", "candidate_lines", "keywords", "required_literals"]

BLOCK = 1024 * 1024  # with the carried partial line, two blocks are in memory at most
_BREAKS = frozenset('"\\\t\n\r\x0b\x0c')
_ESCAPE = b"\x1b"


def _better(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    """The more selective of two alternatives: the one whose shortest literal is longer."""
    if a is None or b is None:
        return a if b is None else b
    return a if min(map(len, a)) >= min(map(len, b)) else b


def _required(items: Iterable[tuple[Any, Any]]) -> set[str] | None:
    best: set[str] | None = None
    run: list[str] = []
    for op, av in [*items, (None, None)]:  # a sentinel flushes the last literal run
        if op is sre.LITERAL and chr(av) not in _BREAKS:
            run.append(chr(av))
            continue
        if run:
            best = _better(best, {"".join(run)})
            run = []
        if op is sre.SUBPATTERN:
            best = _better(best, _required(av[-1]))
        elif op is sre.BRANCH:
            branches = [_required(b) for b in av[1]]
            if all(branches):
                best = _better(best, set().union(*branches))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
            best = _better(best, _required(av[2]))
    return best


def required_literals(pattern: str) -> set[str] | None:
    """Literals at least one of which every match of `pattern` contains; None if there are none."""
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:  # a private parser: when it changes, fall back to matching every line
        return None
    if parsed.state.flags & sre.SRE_FLAG_IGNORECASE:
        return None
    return _required(parsed)


def keywords(patterns: Iterable[str], literals: Iterable[str] = ()) -> list[bytes] | None:
    """The minimal keyword list for `patterns` plus fixed `literals`; None when one pattern has none."""
    found = set(literals)
    for pattern in patterns:
        required = required_literals(pattern)
        if not required:
            return None
        found |= required
    # A keyword containing another adds nothing: the shorter one finds all its lines.
    minimal = [k for k in found if not any(o != k and o in k for o in found)]
    return sorted(k.encode() for k in minimal)


def _lines_holding(data: bytes, end: int, words: list[bytes]) -> Iterator[bytes]:
    """The lines of data[:end] (which ends with a newline) holding any of `words`, in order."""
    starts: set[int] = set()
    for word in words:
        at = data.find(word, 0, end)
        while at >= 0:
            starts.add(data.rfind(b"\n", 0, at) + 1)
            at = data.find(word, data.find(b"\n", at, end) + 1, end)
    for start in sorted(starts):
        yield data[start : data.find(b"\n", start, end)]


def candidate_lines(stream: BinaryIO, words: Callable[[], list[bytes] | None], max_line: int) -> Iterator[str]:
    """The lines of `stream` that hold a keyword, in order, each cut to `max_line` bytes.

    `words` is asked before every block, so the caller can narrow the keywords as it learns
    (e.g. drop build-start markers once the build has started).
    """
    carry = b""
    skipping = False  # inside the unread tail of an over-long line
    while True:
        block = stream.read(BLOCK)
        if skipping and block:
            newline = block.find(b"\n")
            if newline < 0:
                continue
            block, skipping = block[newline + 1 :], False
        data = carry + block if carry else block
        if not block and data and not data.endswith(b"\n"):
            data += b"\n"  # the last line has no newline
        end = data.rfind(b"\n") + 1
        carry = data[end:]
        if len(carry) > max_line:  # a line longer than max_line: keep its start, skip the rest
            data, end, carry, skipping = data[:end] + carry[:max_line] + b"\n", end + max_line + 1, b"", True
        if end:
            current = words()
            if current is None or _ESCAPE in data:
                lines: Iterable[bytes] = data[:end].split(b"\n")[:-1]
            else:
                lines = _lines_holding(data, end, current)
            for line in lines:
                yield line[:max_line].decode("utf-8", errors="replace")
        if not block:
            return
