"""Argo's three expression languages, evaluated the way the controller does.

- `{{...}}` substitution (`substitute`): simple tags are looked up in a flat scope such as
  `{"workflow.parameters.mode": "auto"}`; `{{=...}}` tags are expr-lang expressions over the same
  scope nested into maps (argoproj/argo-workflows util/template/expression_template.go).
- `when` (`evaluate_when`): after substitution, the text is a **govaluate** expression in which
  every bare word is turned into a string, so `approve == approve` is true
  (workflow/controller/steps.go:384-419, `shouldExecute`). This module ports govaluate's lexer,
  its token-transition table and its operator type checks (Knetic/govaluate@9aa49832, the
  version Argo pins: parsing.go, lexerState.go, stagePlanner.go, evaluationStage.go).
- `depends` (`expand_depends`, `evaluate_depends`): a bare task name `A` is expanded to
  `(A.Succeeded || A.Skipped || A.Daemoned)`, plus `|| A.Errored` / `|| A.Failed` when A has
  `continueOn` (workflow/common/ancestry.go:124-139); the result is evaluated as expr-lang with
  `-` replaced by `_` (workflow/controller/dag.go, `evaluateDependsLogic`).

The expr-lang evaluator covers the subset templates use (literals, member and index access,
`?.`, `??`, `? :`, `! not && and || or`, comparisons, `in`, `+ - * / %`, `contains
startsWith endsWith matches`, and the functions in `_FUNCTIONS`); anything else raises
`ExpressionSyntaxError` naming what is unsupported, never a guess.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflows.errors import ExpressionEvaluationError, ExpressionSyntaxError, UnresolvedReferenceError

__all__ = [
    "TASK_RESULTS",
    "dependencies_as_depends",
    "depends_tasks",
    "eval_expr",
    "evaluate_depends",
    "evaluate_when",
    "expand_depends",
    "find_tags",
    "nest_scope",
    "parse_expr",
    "parse_when",
    "substitute",
    "when_outcomes",
]

# ---------------------------------------------------------------------------------------------
# {{...}} substitution
# ---------------------------------------------------------------------------------------------

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def find_tags(text: str) -> list[str]:
    """The contents of every `{{...}}` tag in `text`, stripped (expression tags keep their `=`)."""
    return [m.group(1).strip() for m in _TAG.finditer(text)]


def nest_scope(scope: Mapping[str, Any]) -> dict[str, Any]:
    """A flat scope (`tasks.a.outputs.result`) as nested maps, the env expr-lang sees.

    Argo builds the expression env the same way (util/template/expression_template.go, envMap):
    a dotted key becomes a path of maps, so `tasks['a'].outputs.result` and `tasks.a.outputs.result`
    both resolve. A key that is both a value and a prefix keeps the map.
    """
    root: dict[str, Any] = {}
    for key in sorted(scope, key=lambda k: k.count(".")):
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        if not isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = scope[key]
    return root


def _stringify(value: Any) -> str:
    # expression_template.go: strings are used as is, anything else is JSON-encoded.
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


def substitute(text: str, scope: Mapping[str, Any], *, allow_unresolved: bool = False) -> str:
    """Replace every `{{tag}}` in `text` from `scope`, evaluating `{{=expr}}` tags.

    Raises:
        UnresolvedReferenceError: a tag is not in scope (or an expression yields nil), unless
            `allow_unresolved`, in which case the tag is left as written (Argo does the same for
            tags it fills in later).
        ExpressionSyntaxError, ExpressionEvaluationError: an expression tag is broken.
    """
    env: dict[str, Any] | None = None

    def replace(match: re.Match[str]) -> str:
        nonlocal env
        tag = match.group(1).strip()
        if tag.startswith("="):
            if env is None:
                env = nest_scope(scope)
            value = eval_expr(tag[1:], env)
            if value is None:
                if allow_unresolved:
                    return match.group(0)
                raise UnresolvedReferenceError(
                    f"{{{{{tag}}}}} evaluated to nil", hint="give the value a default (`?? 'x'`)"
                )
            return _stringify(value)
        if tag in scope:
            return _stringify(scope[tag])
        if allow_unresolved:
            return match.group(0)
        raise UnresolvedReferenceError(
            f"failed to resolve {{{{{tag}}}}}", hint="declare it, or give the producing output a default"
        )

    return _TAG.sub(replace, text)


# ---------------------------------------------------------------------------------------------
# govaluate (`when`)
# ---------------------------------------------------------------------------------------------

# Token kinds, as govaluate names them (TokenKind.go).
UNKNOWN, PREFIX, NUMERIC, BOOLEAN, STRING, PATTERN, TIME, VARIABLE, FUNCTION, SEPARATOR = range(10)
ACCESSOR, COMPARATOR, LOGICALOP, MODIFIER, CLAUSE, CLAUSE_CLOSE, TERNARY = range(10, 17)
_KIND_NAMES = {
    UNKNOWN: "UNKNOWN", PREFIX: "PREFIX", NUMERIC: "NUMERIC", BOOLEAN: "BOOLEAN", STRING: "STRING",
    PATTERN: "PATTERN", TIME: "TIME", VARIABLE: "VARIABLE", FUNCTION: "FUNCTION", SEPARATOR: "SEPARATOR",
    ACCESSOR: "ACCESSOR", COMPARATOR: "COMPARATOR", LOGICALOP: "LOGICALOP", MODIFIER: "MODIFIER",
    CLAUSE: "CLAUSE", CLAUSE_CLOSE: "CLAUSE_CLOSE", TERNARY: "TERNARY",
}  # fmt: skip
_VALUES = {NUMERIC, BOOLEAN, STRING, TIME, VARIABLE, PATTERN}
# lexerState.go: which kind may follow which; the bool says whether the kind may end an expression.
_NEXT: dict[int, tuple[bool, set[int]]] = {
    UNKNOWN: (False, {PREFIX, NUMERIC, BOOLEAN, VARIABLE, PATTERN, FUNCTION, ACCESSOR, STRING, TIME, CLAUSE}),
    CLAUSE: (False, {PREFIX, NUMERIC, BOOLEAN, VARIABLE, PATTERN, FUNCTION, ACCESSOR, STRING, TIME, CLAUSE,
                     CLAUSE_CLOSE}),
    CLAUSE_CLOSE: (True, {COMPARATOR, MODIFIER, NUMERIC, BOOLEAN, VARIABLE, STRING, PATTERN, TIME, CLAUSE,
                          CLAUSE_CLOSE, LOGICALOP, TERNARY, SEPARATOR}),
    NUMERIC: (True, {MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR}),
    BOOLEAN: (True, {MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR}),
    STRING: (True, {MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR}),
    TIME: (True, {MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, SEPARATOR}),
    PATTERN: (True, {MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, SEPARATOR}),
    VARIABLE: (True, {MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR}),
    MODIFIER: (False, {PREFIX, NUMERIC, VARIABLE, FUNCTION, ACCESSOR, STRING, BOOLEAN, CLAUSE, CLAUSE_CLOSE}),
    COMPARATOR: (False, {PREFIX, NUMERIC, BOOLEAN, VARIABLE, FUNCTION, ACCESSOR, STRING, TIME, CLAUSE,
                         CLAUSE_CLOSE, PATTERN}),
    LOGICALOP: (False, {PREFIX, NUMERIC, BOOLEAN, VARIABLE, FUNCTION, ACCESSOR, STRING, TIME, CLAUSE,
                        CLAUSE_CLOSE}),
    PREFIX: (False, {NUMERIC, BOOLEAN, VARIABLE, FUNCTION, ACCESSOR, CLAUSE, CLAUSE_CLOSE}),
    TERNARY: (False, {PREFIX, NUMERIC, BOOLEAN, STRING, TIME, VARIABLE, FUNCTION, ACCESSOR, CLAUSE, SEPARATOR}),
    FUNCTION: (False, {CLAUSE}),
    ACCESSOR: (True, {CLAUSE, MODIFIER, COMPARATOR, LOGICALOP, CLAUSE_CLOSE, TERNARY, SEPARATOR}),
    SEPARATOR: (False, {PREFIX, NUMERIC, BOOLEAN, STRING, TIME, VARIABLE, FUNCTION, ACCESSOR, CLAUSE}),
}  # fmt: skip
_PREFIX_SYMBOLS = {"-", "!", "~"}
_MODIFIER_SYMBOLS = {"+", "-", "*", "/", "%", "**", "&", "|", "^", ">>", "<<"}
_LOGICAL_SYMBOLS = {"&&", "||"}
_COMPARATOR_SYMBOLS = {"==", "!=", ">", ">=", "<", "<=", "=~", "!~", "in"}
_TERNARY_SYMBOLS = {"?", ":", "??"}
# The date formats govaluate turns quoted strings into (parsing.go tryParseTime), ISO ones only.
_TIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass(frozen=True)
class _Tok:
    kind: int
    value: Any


def _is_symbol_char(c: str) -> bool:
    # parsing.go isNotAlphanumeric
    return not (c.isdigit() or c.isalpha() or c in "()[]'\"")


def _read_while(text: str, i: int, cond: Callable[[str], bool]) -> tuple[str, int]:
    # readTokenUntilFalse: whitespace ends a token that has started; backslash escapes a character.
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 < len(text):
                out.append(text[i + 1])
            i += 2
            continue
        if c.isspace():
            if out:
                break
            i += 1
            continue
        if not cond(c):
            break
        out.append(c)
        i += 1
    return "".join(out), i


def _parse_time(text: str) -> float | None:
    if not text[:4].isdigit():  # every format starts with %Y, four digits: skip strptime for words
        return None
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text.replace("Z", "+0000"), fmt).timestamp()
        except ValueError:
            continue
    return None


def _govaluate_tokens(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    state = UNKNOWN
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c.isdigit() or c == ".":
            if c == "0" and text[i + 1 : i + 2] == "x":
                digits, i = _read_while(text, i + 2, lambda ch: ch in "0123456789abcdefABCDEF")
                try:
                    tok = _Tok(NUMERIC, float(int(digits, 16)))
                except ValueError:
                    raise ExpressionSyntaxError(f"Unable to parse hex value '{digits}' to uint64") from None
            else:
                digits, i = _read_while(text, i, lambda ch: ch.isdigit() or ch == ".")
                try:
                    tok = _Tok(NUMERIC, float(digits))
                except ValueError:
                    raise ExpressionSyntaxError(f"Unable to parse numeric value '{digits}' to float64") from None
        elif c == ",":
            tok, i = _Tok(SEPARATOR, ","), i + 1
        elif c == "[":
            end = text.find("]", i + 1)
            if end < 0:
                raise ExpressionSyntaxError("Unclosed parameter bracket")
            tok, i = _Tok(VARIABLE, text[i + 1 : end]), end + 1
        elif c.isalpha():
            word, i = _read_while(text, i, lambda ch: ch.isalnum() or ch in "_.")
            if word in ("true", "false"):
                tok = _Tok(BOOLEAN, word == "true")
            elif word in ("in", "IN"):
                tok = _Tok(COMPARATOR, "in")
            elif "." in word:
                if word.endswith("."):
                    raise ExpressionSyntaxError(f"Hanging accessor on token '{word}'")
                for part in word.split(".")[1:]:
                    if part[:1].upper() != part[:1]:
                        raise ExpressionSyntaxError(f"Unable to access unexported field '{part}' in token '{word}'")
                tok = _Tok(ACCESSOR, word.split("."))
            else:
                tok = _Tok(VARIABLE, word)
        elif c in "'\"":
            j, out = i + 1, []
            while j < len(text) and text[j] not in "'\"":
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                out.append(text[j])
                j += 1
            if j >= len(text):
                raise ExpressionSyntaxError("Unclosed string literal")
            literal = "".join(out)
            when = _parse_time(literal)
            tok, i = (_Tok(TIME, when) if when is not None else _Tok(STRING, literal)), j + 1
        elif c == "(":
            tok, i = _Tok(CLAUSE, "("), i + 1
        elif c == ")":
            tok, i = _Tok(CLAUSE_CLOSE, ")"), i + 1
        else:
            symbol, i = _read_while(text, i, _is_symbol_char)
            if symbol in _PREFIX_SYMBOLS and PREFIX in _NEXT[state][1]:
                tok = _Tok(PREFIX, symbol)
            elif symbol in _MODIFIER_SYMBOLS:
                tok = _Tok(MODIFIER, symbol)
            elif symbol in _LOGICAL_SYMBOLS:
                tok = _Tok(LOGICALOP, symbol)
            elif symbol in _COMPARATOR_SYMBOLS:
                tok = _Tok(COMPARATOR, symbol)
            elif symbol in _TERNARY_SYMBOLS:
                tok = _Tok(TERNARY, symbol)
            else:
                raise ExpressionSyntaxError(f"Invalid token: '{symbol}'")
        tokens.append(tok)
        state = tok.kind
    return tokens


def _check_syntax(tokens: list[_Tok]) -> None:
    depth = 0
    for tok in tokens:
        depth += {CLAUSE: 1, CLAUSE_CLOSE: -1}.get(tok.kind, 0)
    if depth:
        raise ExpressionSyntaxError("Unbalanced parenthesis")
    state, last = UNKNOWN, None
    for tok in tokens:
        if tok.kind not in _NEXT[state][1]:
            if last is not None and last.kind == VARIABLE and tok.kind == CLAUSE:
                raise ExpressionSyntaxError(f"Undefined function {last.value}")
            raise ExpressionSyntaxError(
                f"Cannot transition token types from {_KIND_NAMES[state]} [{last.value if last else None}] "
                f"to {_KIND_NAMES[tok.kind]} [{tok.value}]"
            )
        state, last = tok.kind, tok
    if not _NEXT[state][0]:
        raise ExpressionSyntaxError("Unexpected end of expression")


@dataclass(frozen=True)
class _GNode:
    op: str  # "lit", "access", "list" or an operator symbol
    left: Any = None
    right: Any = None


# Binary levels, loosest first (stagePlanner.go: separator, ternary, ||, &&, comparator, bitwise,
# shift, additive, multiplicative, exponential). Same-level operators associate to the left.
_LEVELS: list[tuple[int, set[str]]] = [
    (TERNARY, {"?", ":", "??"}),
    (LOGICALOP, {"||"}),
    (LOGICALOP, {"&&"}),
    (COMPARATOR, _COMPARATOR_SYMBOLS),
    (MODIFIER, {"&", "|", "^"}),
    (MODIFIER, {">>", "<<"}),
    (MODIFIER, {"+", "-"}),
    (MODIFIER, {"*", "/", "%"}),
    (MODIFIER, {"**"}),
]


class _GParser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def separated(self) -> _GNode:
        items = [self.level(0)]
        while (tok := self.peek()) is not None and tok.kind == SEPARATOR:
            self.i += 1
            items.append(self.level(0))
        return items[0] if len(items) == 1 else _GNode("list", items)

    def level(self, n: int) -> _GNode:
        if n == len(_LEVELS):
            return self.unary()
        kind, symbols = _LEVELS[n]
        left = self.level(n + 1)
        while (tok := self.peek()) is not None and tok.kind == kind and tok.value in symbols:
            self.i += 1
            left = _GNode(tok.value, left, self.level(n + 1))
        return left

    def unary(self) -> _GNode:
        tok = self.peek()
        if tok is None:
            raise ExpressionSyntaxError("Unexpected end of expression")
        self.i += 1
        if tok.kind == PREFIX:
            return _GNode("prefix" + tok.value, None, self.unary())
        if tok.kind == CLAUSE:
            inner = self.separated()
            self.i += 1  # the closing parenthesis (balance was checked)
            return inner
        if tok.kind == ACCESSOR:
            return _GNode("access", tok.value)
        if tok.kind == FUNCTION:  # Argo registers no functions; kept for a precise message
            raise ExpressionSyntaxError(f"Undefined function {tok.value}")
        return _GNode("lit", tok.value)


@functools.lru_cache(maxsize=4096)  # pure: the same text always parses the same (immutable tree)
def parse_when(text: str) -> _GNode:
    """Parse a substituted `when` as Argo does: govaluate with bare words turned into strings.

    Raises:
        ExpressionSyntaxError: with govaluate's own message, plus Argo's quoting hint for an
            invalid token (workflow/controller/steps.go:384-419).
    """
    try:
        tokens = _govaluate_tokens(text)
        _check_syntax(tokens)
    except ExpressionSyntaxError as exc:
        hint = 'try wrapping the affected expression in quotes (")' if "Invalid token" in str(exc) else None
        raise ExpressionSyntaxError(f"Invalid 'when' expression '{text}': {exc}", hint=hint) from None
    # The variables Argo does not use become strings, so `foo != bar` compares two words.
    tokens = [_Tok(STRING, t.value) if t.kind == VARIABLE else t for t in tokens]
    _check_syntax(tokens)
    for i, tok in enumerate(tokens[:-1]):  # optimizeTokens: a constant regex is compiled up front
        if tok.kind == COMPARATOR and tok.value in ("=~", "!~") and tokens[i + 1].kind == STRING:
            _compile(tokens[i + 1].value)
    return _GParser(tokens).separated()


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ExpressionSyntaxError(f"Unable to compile regexp pattern '{pattern}': {exc}") from None


def _gtype(v: Any) -> str:
    return {bool: "bool", float: "number", str: "string", list: "array"}.get(type(v), type(v).__name__)


def _geval(node: _GNode) -> Any:
    op = node.op
    if op == "lit":
        return node.left
    if op == "access":
        # Argo passes no parameters, so an accessor (a dotted bare word) never resolves.
        raise ExpressionEvaluationError(f"No parameter '{node.left[0]}' found.")
    if op == "list":
        return [_geval(n) for n in node.left]
    if op.startswith("prefix"):
        value = _geval(node.right)
        if op == "prefix!":
            return not _need(value, bool, "!")
        if op == "prefix-":
            return -_need(value, float, "-")
        return float(~int(_need(value, float, "~")))
    left = _geval(node.left)
    if op == "&&" and left is False:
        return False
    if op == "||" and left is True:
        return True
    if op in ("??", ":") and left is not None:
        return left
    if op == "?":
        if not isinstance(left, bool):
            raise ExpressionEvaluationError(
                f"Value '{left}' cannot be used with the ternary operator '?', it is not a bool"
            )
        return _geval(node.right) if left else None
    right = _geval(node.right)
    if op in ("??", ":"):
        return right
    if op in ("&&", "||"):
        _need(left, bool, op)
        return _need(right, bool, op)
    if op == "==":
        return type(left) is type(right) and left == right  # reflect.DeepEqual
    if op == "!=":
        return not (type(left) is type(right) and left == right)
    if op in (">", ">=", "<", "<="):
        if not (type(left) is type(right) and isinstance(left, float | str)):
            raise ExpressionEvaluationError(
                f"Value '{left}' cannot be used with the comparator '{op}', it is not a number (or not two strings)"
            )
        return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
    if op in ("=~", "!~"):
        if not isinstance(left, str) or not isinstance(right, str):
            raise ExpressionEvaluationError(
                f"Value '{left}' cannot be used with the comparator '{op}', it is not a string"
            )
        found = _compile(right).search(left) is not None
        return found if op == "=~" else not found
    if op == "in":
        if not isinstance(right, list):
            raise ExpressionEvaluationError(
                f"Value '{right}' cannot be used with the comparator 'in', it is not an array"
            )
        return any(type(v) is type(left) and v == left for v in right)
    if op == "+":
        if isinstance(left, str) or isinstance(right, str):
            return f"{_go_value(left)}{_go_value(right)}"
        return _need(left, float, op) + _need(right, float, op)
    a, b = _need(left, float, op), _need(right, float, op)
    if op in ("/", "%") and b == 0:
        return math.inf if op == "/" else math.nan
    return {
        "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b, "%": lambda: float(math.fmod(a, b)),
        "**": lambda: a**b, "&": lambda: float(int(a) & int(b)), "|": lambda: float(int(a) | int(b)),
        "^": lambda: float(int(a) ^ int(b)), ">>": lambda: float(int(a) >> int(b)),
        "<<": lambda: float(int(a) << int(b)),
    }[op]()  # fmt: skip


def _go_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _need(value: Any, typ: type, op: str) -> Any:
    if type(value) is not typ:
        raise ExpressionEvaluationError(
            f"Value '{value}' cannot be used with the operator '{op}', it is not a {_gtype(typ())}"
        )
    return value


def evaluate_when(text: str) -> bool:
    """Whether a task with this already-substituted `when` runs (an empty `when` always does).

    Raises:
        ExpressionSyntaxError: the text does not parse.
        ExpressionEvaluationError: it fails on its values, or is not a boolean.
    """
    if not text.strip():
        return True
    result = _geval(parse_when(text))
    if not isinstance(result, bool):
        raise ExpressionEvaluationError(f"Expected boolean evaluation for '{text}'. Got {_go_value(result)}")
    return result


def when_outcomes(text: str, unknown: str) -> frozenset[bool | None]:
    """What `evaluate_when(text)` can end with when every operand holding `unknown` may be any value.

    `text` is a substituted `when` in which each value not known yet was replaced by a word
    containing `unknown`, as one operand (quoted, or a bare single word). The result holds True,
    False and/or None (it raises: a type error, a non-boolean result, a syntax error): the Kleene
    logic of govaluate's short-circuits, so `false && x` is only False while `x == 'a'` may be
    either. The task runs only when True is among them; lint uses this to show a task is blocked.
    """
    if not text.strip():
        return frozenset({True})
    try:
        node = parse_when(text)
    except ExpressionSyntaxError:
        return frozenset({None})
    return frozenset(_outcomes(node, unknown))


def _holds(node: Any, unknown: str) -> bool:
    """Whether a parsed `when` subtree contains an unknown operand."""
    if isinstance(node, str):
        return unknown in node
    if isinstance(node, list):
        return any(_holds(n, unknown) for n in node)
    if isinstance(node, _GNode):
        return _holds(node.left, unknown) or _holds(node.right, unknown)
    return False


def _outcomes(node: _GNode, unknown: str) -> set[bool | None]:
    op = node.op
    if op in ("&&", "||"):
        # Mirrors _geval: the left side decides alone when it is the short-circuit value;
        # a non-boolean left side raises whatever the right side is.
        stop = op == "||"
        left = _outcomes(node.left, unknown)
        out = left & {stop, None}
        if (not stop) in left:
            out |= _outcomes(node.right, unknown)
        return out
    if op == "prefix!":
        return {None if v is None else not v for v in _outcomes(node.right, unknown)}
    if not _holds(node, unknown):
        try:
            value = _geval(node)
        except (ExpressionEvaluationError, ExpressionSyntaxError):
            return {None}
        return {value} if isinstance(value, bool) else {None}
    plain = (node.left, node.right)
    if op in ("==", "!=") and all(n.op == "lit" for n in plain):
        return {True, False}  # reflect.DeepEqual of two operands never raises
    return {True, False, None}


# ---------------------------------------------------------------------------------------------
# expr-lang ({{=...}}, valueFrom.expression, depends)
# ---------------------------------------------------------------------------------------------

_EXPR_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>0[xX][0-9a-fA-F_]+|\d[\d_]*\.\d+(?:[eE][-+]?\d+)?|\d[\d_]*(?:[eE][-+]?\d+)?|\.\d+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>\?\?|\?\.|\.\.|==|!=|<=|>=|&&|\|\||\*\*|[-+*/%^<>!?:.,()\[\]{}])
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "in": "in", "matches": "matches", "contains": "contains",
             "startsWith": "startsWith", "endsWith": "endsWith"}  # fmt: skip
# expr-lang's binary precedences (parser/operator/operator.go).
_BINARY = {"||": 10, "&&": 15, "==": 20, "!=": 20, "<": 20, ">": 20, "<=": 20, ">=": 20, "in": 20, "not in": 20,
           "matches": 20, "contains": 20, "startsWith": 20, "endsWith": 20, "+": 30, "-": 30, "*": 60, "/": 60,
           "%": 60, "**": 100, "^": 100, "??": 500}  # fmt: skip
_UNARY = {"!": 50, "-": 90, "+": 90}


@dataclass(frozen=True)
class _Expr:
    op: str
    args: tuple[Any, ...] = ()


def _expr_tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _EXPR_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionSyntaxError(f"unexpected character {text[pos:].lstrip()[:1]!r} in expression {text!r}")
        pos = m.end()
        if m["num"]:
            raw = m["num"].replace("_", "")
            tokens.append(
                (
                    "lit",
                    int(raw, 16)
                    if raw[:2].lower() == "0x"
                    else float(raw)
                    if any(c in raw for c in ".eE")
                    else int(raw),
                )
            )
        elif m["str"]:
            raw = m["str"]
            tokens.append(
                (
                    "lit",
                    raw[1:-1]
                    if raw[0] == "`"
                    else json.loads('"' + raw[1:-1].replace('"', '\\"').replace("\\'", "'") + '"')
                    if raw[0] == "'"
                    else json.loads(raw),
                )
            )
        elif m["name"]:
            name = m["name"]
            if name in ("true", "false"):
                tokens.append(("lit", name == "true"))
            elif name == "nil":
                tokens.append(("lit", None))
            elif name in _WORD_OPS:
                tokens.append(("op", _WORD_OPS[name]))
            else:
                tokens.append(("name", name))
        else:
            tokens.append(("op", m["op"]))
    return tokens


class _ExprParser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, _expr_tokens(text), 0

    def peek(self, offset: int = 0) -> tuple[str, Any] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def is_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in ops

    def expect(self, op: str) -> None:
        if not self.is_op(op):
            got = self.peek()
            raise ExpressionSyntaxError(f"expected {op!r} but found {got[1] if got else 'end'!r} in {self.text!r}")
        self.i += 1

    def parse(self) -> _Expr:
        node = self.expression()
        if self.peek() is not None:
            raise ExpressionSyntaxError(f"unexpected token {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return node

    def expression(self) -> _Expr:
        cond = self.binary(0)
        if self.is_op("?"):
            self.i += 1
            then = self.expression()
            self.expect(":")
            return _Expr("?:", (cond, then, self.expression()))
        return cond

    def binary(self, min_prec: int) -> _Expr:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op":
                return left
            op = tok[1]
            if op == "!" and self.peek(1) == ("op", "in"):
                op = "not in"
            prec = _BINARY.get(op)
            if prec is None or prec < min_prec:
                return left
            self.i += 2 if op == "not in" else 1
            right = self.binary(prec if op in ("**", "^") else prec + 1)
            left = _Expr(op, (left, right))

    def unary(self) -> _Expr:
        if self.is_op(*_UNARY):
            op = self.peek()[1]  # type: ignore[index]
            self.i += 1
            return _Expr("u" + op, (self.binary(_UNARY[op]),))
        return self.postfix(self.primary())

    def primary(self) -> _Expr:
        tok = self.peek()
        if tok is None:
            raise ExpressionSyntaxError(f"unexpected end of expression {self.text!r}")
        self.i += 1
        kind, value = tok
        if kind == "lit":
            return _Expr("lit", (value,))
        if kind == "name":
            if self.is_op("("):
                self.i += 1
                return _Expr("call", (value, tuple(self.items(")"))))
            return _Expr("name", (value,))
        if value == "(":
            node = self.expression()
            self.expect(")")
            return node
        if value == "[":
            return _Expr("array", tuple(self.items("]")))
        raise ExpressionSyntaxError(f"unexpected token {value!r} in {self.text!r}")

    def items(self, close: str) -> list[_Expr]:
        out: list[_Expr] = []
        while not self.is_op(close):
            out.append(self.expression())
            if not self.is_op(close):
                self.expect(",")
        self.i += 1
        return out

    def postfix(self, node: _Expr) -> _Expr:
        while True:
            if self.is_op(".", "?."):
                optional = self.peek()[1] == "?."  # type: ignore[index]
                self.i += 1
                tok = self.peek()
                if tok is None or tok[0] != "name":
                    raise ExpressionSyntaxError(f"expected a field name after '.' in {self.text!r}")
                self.i += 1
                if self.is_op("("):
                    raise ExpressionSyntaxError(f"method calls ({tok[1]}(...)) are not supported in {self.text!r}")
                node = _Expr("member", (node, _Expr("lit", (tok[1],)), optional))
            elif self.is_op("["):
                self.i += 1
                index = self.expression()
                self.expect("]")
                node = _Expr("member", (node, index, False))
            else:
                return node


@functools.lru_cache(maxsize=4096)
def parse_expr(text: str) -> _Expr:
    """Parse an expr-lang expression (the subset described in the module docstring).

    Raises:
        ExpressionSyntaxError: it does not parse, or uses something outside the subset.
    """
    if not text.strip():
        raise ExpressionSyntaxError("empty expression")
    return _ExprParser(text).parse()


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _expr_equal(a: Any, b: Any) -> bool:
    if _num(a) and _num(b):
        return a == b
    return type(a) is type(b) and a == b


def _jsonpath(doc: Any, path: str) -> Any:
    # The `$.a.b[0]` subset of Argo's jsonpath() (util/expr/env), enough for parameter JSON.
    data = json.loads(doc) if isinstance(doc, str) else doc
    for key, index in re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", path.removeprefix("$")):
        data = data[int(index)] if index else data[key]
    return data


def _to_int(v: Any) -> int:
    try:
        return int(float(v)) if isinstance(v, str) and "." in v else int(v)
    except (TypeError, ValueError):
        raise ExpressionEvaluationError(f"cannot convert {v!r} to int") from None


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ExpressionEvaluationError(f"cannot convert {v!r} to float") from None


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "lower": str.lower,
    "upper": str.upper,
    "trim": str.strip,
    "string": lambda v: v if isinstance(v, str) else _stringify(v),
    "int": _to_int,
    "asInt": _to_int,
    "float": _to_float,
    "asFloat": _to_float,
    "toJson": lambda v: json.dumps(v, separators=(",", ":")),
    "toJSON": lambda v: json.dumps(v, separators=(",", ":")),
    "fromJSON": json.loads,
    "jsonpath": _jsonpath,
    "split": lambda s, sep: s.split(sep),
    "join": lambda items, sep="": sep.join(items),
}


def _member(obj: Any, key: Any, optional: bool, text: str) -> Any:
    if obj is None:
        if optional:
            return None
        raise ExpressionEvaluationError(f"cannot fetch {key} from <nil> in {text!r}", hint="use `?.` or `??`")
    if isinstance(obj, dict):
        return obj.get(key)
    if isinstance(obj, list | str) and isinstance(key, int):
        try:
            return obj[key]
        except IndexError:
            raise ExpressionEvaluationError(f"index {key} out of range in {text!r}") from None
    raise ExpressionEvaluationError(f"cannot fetch {key!r} from {type(obj).__name__} in {text!r}")


def _bool(v: Any, op: str, text: str) -> bool:
    if not isinstance(v, bool):
        raise ExpressionEvaluationError(f"invalid operation: {op} on {_gtype(v)} ({v!r}) in {text!r}")
    return v


def _eval(node: _Expr, env: Mapping[str, Any], text: str, safe: bool = False) -> Any:
    op, args = node.op, node.args
    if op == "lit":
        return args[0]
    if op == "name":
        return env.get(args[0])
    if op == "array":
        return [_eval(a, env, text) for a in args]
    if op == "member":
        obj = _eval(args[0], env, text, safe)
        return _member(obj, _eval(args[1], env, text), args[2] or safe, text)
    if op == "call":
        name, call_args = args
        fn = _FUNCTIONS.get(name)
        if fn is None:
            raise ExpressionSyntaxError(f"function {name}() is not supported here in {text!r}")
        try:
            return fn(*[_eval(a, env, text) for a in call_args])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ExpressionEvaluationError(f"{name}() failed in {text!r}: {exc}") from None
    if op == "?:":
        return _eval(args[1], env, text) if _bool(_eval(args[0], env, text), "?:", text) else _eval(args[2], env, text)
    if op == "u!":
        return not _bool(_eval(args[0], env, text), "!", text)
    if op in ("u-", "u+"):
        v = _eval(args[0], env, text)
        if not _num(v):
            raise ExpressionEvaluationError(f"invalid operation: {op[1]} on {_gtype(v)} in {text!r}")
        return -v if op == "u-" else v
    if op == "??":
        left = _eval(args[0], env, text, safe=True)  # `a.b.c ?? x` tolerates a missing a.b
        return left if left is not None else _eval(args[1], env, text)
    left = _eval(args[0], env, text)
    if op == "&&":
        return _bool(left, op, text) and _bool(_eval(args[1], env, text), op, text)
    if op == "||":
        return _bool(left, op, text) or _bool(_eval(args[1], env, text), op, text)
    right = _eval(args[1], env, text)
    if op == "==":
        return _expr_equal(left, right)
    if op == "!=":
        return not _expr_equal(left, right)
    if op in ("in", "not in"):
        if isinstance(right, dict):
            found = left in right
        elif isinstance(right, list):
            found = any(_expr_equal(left, v) for v in right)
        else:
            raise ExpressionEvaluationError(f"invalid operation: in on {_gtype(right)} in {text!r}")
        return found if op == "in" else not found
    if op in ("contains", "startsWith", "endsWith", "matches"):
        if not isinstance(left, str) or not isinstance(right, str):
            raise ExpressionEvaluationError(
                f"invalid operation: {op} on {_gtype(left)} and {_gtype(right)} in {text!r}"
            )
        if op == "matches":
            return re.search(right, left) is not None
        return {"contains": right in left, "startsWith": left.startswith(right), "endsWith": left.endswith(right)}[op]
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op in ("<", ">", "<=", ">=") and isinstance(left, str) and isinstance(right, str):
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
    if not (_num(left) and _num(right)):
        raise ExpressionEvaluationError(
            f"invalid operation: {op} (mismatched types {_gtype(left)} and {_gtype(right)}) in {text!r}"
        )
    if op in ("/", "%") and right == 0:
        raise ExpressionEvaluationError(f"division by zero in {text!r}")
    return {
        "+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
        "/": lambda: left / right, "%": lambda: left % right, "**": lambda: float(left**right),
        "^": lambda: float(left**right), "<": lambda: left < right, ">": lambda: left > right,
        "<=": lambda: left <= right, ">=": lambda: left >= right,
    }[op]()  # fmt: skip


def eval_expr(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate an expr-lang expression against `env` (nested maps, see `nest_scope`).

    Raises:
        ExpressionSyntaxError: it does not parse or uses something outside the subset.
        ExpressionEvaluationError: it fails on these values (a type error, a nil member).
    """
    return _eval(parse_expr(text), env, text)


# ---------------------------------------------------------------------------------------------
# depends
# ---------------------------------------------------------------------------------------------

TASK_RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")
# ancestry.go taskNameRegex: `name.Result` first, else a bare name (Go's leftmost-first alternation).
_DEPENDS_NAME = re.compile(r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)|([a-zA-Z0-9][-a-zA-Z0-9]*)")
# The node phase each result means (dag.go evaluateDependsLogic: Errored is phase Error).
_PHASE_OF_RESULT = {"Succeeded": "Succeeded", "Failed": "Failed", "Errored": "Error", "Skipped": "Skipped",
                    "Omitted": "Omitted"}  # fmt: skip


def depends_tasks(depends: str) -> dict[str, list[str]]:
    """Task name -> results named for it (`[]` for a bare name), as Argo's regex reads `depends`.

    Raises:
        ExpressionSyntaxError: a result is not one Argo knows (ancestry.go ValidateTaskResults).
    """
    found: dict[str, list[str]] = {}
    for m in _DEPENDS_NAME.finditer(depends):
        if m.group(1):
            name, result = m.group(1).split(".")
            if result not in TASK_RESULTS:
                raise ExpressionSyntaxError(
                    f"task result '{result}' for task '{name}' is invalid",
                    hint=f"use one of {', '.join(TASK_RESULTS)}",
                )
            found.setdefault(name, []).append(result)
        else:
            found.setdefault(m.group(2), [])
    return found


def expand_depends(depends: str, continue_on: Mapping[str, Mapping[str, bool]] | None = None) -> str:
    """`depends` with every bare task name expanded as Argo expands it (ancestry.go:124-139)."""
    continue_on = continue_on or {}
    out, last = [], 0
    for m in _DEPENDS_NAME.finditer(depends):
        if m.group(2) is None:
            continue
        name = m.group(2)
        results = ["Succeeded", "Skipped", "Daemoned"]
        flags = continue_on.get(name) or {}
        if flags.get("error"):
            results.append("Errored")
        if flags.get("failed"):
            results.append("Failed")
        out.append(depends[last : m.start()] + "(" + " || ".join(f"{name}.{r}" for r in results) + ")")
        last = m.end()
    out.append(depends[last:])
    return "".join(out)


def dependencies_as_depends(dependencies: list[str]) -> str:
    """The `depends` equivalent of a `dependencies` list (ancestry.go getTaskDependsLogic)."""
    return " && ".join(dependencies)


def evaluate_depends(
    depends: str,
    phases: Mapping[str, str],
    continue_on: Mapping[str, Mapping[str, bool]] | None = None,
    *,
    groups: Mapping[str, list[str]] | None = None,
) -> bool:
    """Whether a task with this `depends` executes, given each dependency's node phase.

    `phases` maps task name -> Succeeded | Failed | Error | Skipped | Omitted. `groups` gives the
    item phases of a fanned-out task (withItems...), for `.AnySucceeded` and `.AllFailed`.

    Raises:
        ExpressionSyntaxError: `depends` does not parse after expansion.
        ExpressionEvaluationError: it names a task not in `phases`, or is not boolean.
    """
    if not depends.strip():
        return True
    deps = depends_tasks(depends)
    env: dict[str, Any] = {}
    for name in deps:
        if name not in phases:
            raise ExpressionEvaluationError(f"dependency '{name}' not defined", hint="depend on a task of this DAG")
        phase = phases[name]
        results = {result: _PHASE_OF_RESULT.get(result) == phase for result in TASK_RESULTS}  # Daemoned: false
        children = (groups or {}).get(name) or []
        results["AnySucceeded"] = any(p == "Succeeded" for p in children)
        results["AllFailed"] = bool(children) and all(p == "Failed" for p in children)
        env[name.replace("-", "_")] = results
    logic = expand_depends(depends, continue_on).replace("-", "_")
    result = eval_expr(logic, env)
    if not isinstance(result, bool):
        raise ExpressionEvaluationError(f"depends {depends!r} is not boolean")
    return result
