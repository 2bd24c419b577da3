"""The trigger language: when does an observation wake an agent?

Expressions are evaluated inside the watcher, at no model cost:

    status != 200
    json.price < 100 and json.currency == "EUR"
    changed(body)
    exit_code != 0 or "ERROR" in stdout
    went_down
    count > 0

Names are fields of the current observation (dotted for nested values; a
missing field is null). Operators: == != < <= > >= in, not in, and, or, not,
+ - * /, parentheses. Literals: numbers, "strings", true/false/null.
Functions: changed(field) (differs from the previous observation),
previous(field), len(x), lower(x), contains(x, y), matches(x, "regex").
Flags: went_down / went_up (the source stopped / started answering or
running), appeared / disappeared (aliases for processes).

Parsing uses Python's own parser, and then walks a whitelist of node types:
nothing is ever evaluated as Python, and an error names the column.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from legion.errors import InvalidParams

FUNCTIONS = ("changed", "previous", "len", "lower", "contains", "matches")
FLAGS = ("went_down", "went_up", "appeared", "disappeared")
CONSTANTS = {"true": True, "false": False, "null": None}
# The field that says "the source is up" for each kind, for went_down/went_up.
UP_FIELDS = ("ok", "up", "running")


class TriggerError(InvalidParams):
    kind = "invalid_trigger"


@dataclass(frozen=True)
class Trigger:
    source: str
    tree: ast.Expression

    def evaluate(self, now: dict[str, Any], before: dict[str, Any] | None) -> bool:
        return bool(_Eval(now, before).visit(self.tree.body))


def parse(source: str) -> Trigger:
    text = source.strip()
    if not text:
        raise TriggerError(
            "the trigger is empty", hint="write a condition such as: status != 200, changed(body)"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        raise TriggerError(
            f"trigger syntax error at column {col + 1}: {exc.msg}\n  {text}\n  {' ' * col}^",
            hint="conditions look like: status != 200, json.price < 100, changed(body), "
            'exit_code != 0 and "ERROR" in stdout',
            data={"column": col + 1},
        ) from None
    _check(tree.body, text)
    return Trigger(text, tree)


_ALLOWED = (
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Constant,
    ast.Name,
    ast.Attribute,
    ast.Call,
    ast.Load,
    ast.Subscript,
)


def _check(node: ast.AST, text: str) -> None:
    for sub in ast.walk(node):
        if not isinstance(sub, _ALLOWED):
            _fail(sub, text, f"{type(sub).__name__.lower()} is not allowed in a trigger")
        if isinstance(sub, ast.Call):
            if not isinstance(sub.func, ast.Name) or sub.func.id not in FUNCTIONS:
                _fail(sub, text, "unknown function; the functions are: " + ", ".join(FUNCTIONS))
            if sub.keywords:
                _fail(sub, text, "functions take positional arguments only")
        name = (
            sub.id
            if isinstance(sub, ast.Name)
            else sub.attr
            if isinstance(sub, ast.Attribute)
            else ""
        )
        if name.startswith("_"):
            # Fields are looked up in the observation's dict, never on objects; a
            # leading underscore is refused so that stays obvious.
            _fail(sub, text, f"{name!r}: field names cannot start with '_'")
        if isinstance(sub, ast.Subscript) and not isinstance(sub.slice, ast.Constant):
            _fail(sub, text, 'an index must be a number or a "string"')
        if (
            isinstance(sub, ast.Constant)
            and not isinstance(sub.value, int | float | str)
            and sub.value is not None
        ):
            _fail(sub, text, 'only numbers and "strings" may be written as values')


def _fail(node: ast.AST, text: str, message: str) -> None:
    col = getattr(node, "col_offset", 0)
    raise TriggerError(
        f"trigger error at column {col + 1}: {message}\n  {text}\n  {' ' * col}^",
        hint="see docs/watchers.md for the trigger language",
        data={"column": col + 1},
    )


def lookup(obs: dict[str, Any] | None, path: str) -> Any:
    value: Any = obs or {}
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _path(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _path(node.value)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base = _path(node.value)
        return f"{base}.{node.slice.value!s}" if base else None
    return None


class _Eval(ast.NodeVisitor):
    def __init__(self, now: dict[str, Any], before: dict[str, Any] | None) -> None:
        self.now = now
        self.before = before

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            return all(self.visit(v) for v in node.values)
        return any(self.visit(v) for v in node.values)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(value, int | float) else None

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.visit(right_node)
            if not _compare(op, left, right):
                return False
            left = right
        return True

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        a, b = self.visit(node.left), self.visit(node.right)
        try:
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            return a / b
        except (TypeError, ZeroDivisionError):
            return None

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FLAGS:
            return self._flag(node.id)
        return lookup(self.now, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        return lookup(self.now, _path(node) or "")

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        return lookup(self.now, _path(node) or "")

    def visit_Call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name in ("changed", "previous"):
            path = _path(node.args[0]) if node.args else None
            if path is None:
                return None
            if name == "previous":
                return lookup(self.before, path)
            return self.before is not None and lookup(self.before, path) != lookup(self.now, path)
        args = [self.visit(a) for a in node.args]
        try:
            if name == "len":
                return len(args[0]) if args and args[0] is not None else 0
            if name == "lower":
                return str(args[0]).lower() if args and args[0] is not None else None
            if name == "contains":
                return args[1] in args[0] if len(args) == 2 and args[0] is not None else False
            if name == "matches":
                return (
                    bool(re.search(str(args[1]), str(args[0])))
                    if len(args) == 2 and args[0] is not None
                    else False
                )
        except (TypeError, re.error):
            return None
        return None

    def _flag(self, name: str) -> bool:
        if self.before is None:
            return False
        for field in UP_FIELDS:
            if field in self.now:
                was, now = bool(self.before.get(field)), bool(self.now.get(field))
                return (
                    (was and not now) if name in ("went_down", "disappeared") else (now and not was)
                )
        return False


def _compare(op: ast.cmpop, a: Any, b: Any) -> bool:
    try:
        if isinstance(op, ast.Eq):
            return bool(a == b)
        if isinstance(op, ast.NotEq):
            return bool(a != b)
        if isinstance(op, ast.In):
            return a in b if b is not None else False
        if isinstance(op, ast.NotIn):
            return a not in b if b is not None else True
        if a is None or b is None:
            return False
        if isinstance(op, ast.Lt):
            return bool(a < b)
        if isinstance(op, ast.LtE):
            return bool(a <= b)
        if isinstance(op, ast.Gt):
            return bool(a > b)
        return bool(a >= b)
    except TypeError:
        return False
