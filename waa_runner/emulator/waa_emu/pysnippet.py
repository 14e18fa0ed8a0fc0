"""`python -c CODE` and `python script.py` on the guest, answered without running Python code:
the code is parsed (ast.parse runs nothing) and walked by a small evaluator that knows only the
names in pyguest.py (platform, pyautogui, pygetwindow, os, os.path, open, subprocess, ...).
Anything else is UNKNOWN: a statement that uses it is skipped, print() of it prints nothing."""
from __future__ import annotations

import ast
import operator
from types import MappingProxyType
from typing import Any, Callable, Mapping

from . import pyfiles, pyguest
from .desktop import PYTHON_VERSION
from .guest_files import normalize
from .pyfiles import GuestException
from .pyguest import UNKNOWN, Ref
from .state import State

Result = tuple[str, str, int]
MAX_CODE = 1 << 20
MAX_OUTPUT = 1 << 20
MAX_STEPS = 10_000
BINOPS: Mapping[type, Callable[[Any, Any], Any]] = MappingProxyType({
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv, ast.Div: operator.truediv, ast.BitAnd: operator.and_, ast.BitOr: operator.or_})
COMPARE: Mapping[type, Callable[[Any, Any], Any]] = MappingProxyType({
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_,
    ast.IsNot: operator.is_not})


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class Interpreter:
    def __init__(self, state: State) -> None:
        self.state = state
        self.names: dict[str, Any] = {}
        self.out: list[str] = []
        self.err: list[str] = []
        self.steps = 0

    # ----------------------------------------------------------------------------- statements
    def run(self, code: str, filename: str = "<string>") -> Result:
        if len(code) > MAX_CODE:
            return "", "The command line is too long.\n", 1
        try:
            tree = ast.parse(code, filename)
        except SyntaxError as err:
            line = (err.text or "").strip()
            return "", f'  File "{filename}", line {err.lineno}\n    {line}\n    ^\nSyntaxError: {err.msg}\n', 1
        code_rc = 0
        try:
            self.block(tree.body)
        except GuestException as exc:
            self.err.append(f'Traceback (most recent call last):\n  File "{filename}", line {exc.lineno}, '
                            f"in <module>\n{exc.kind}: {exc.message}\n")
            code_rc = 1
        except Exit as done:
            code_rc = done.code
        finally:
            pyfiles.flush_files(self)
        return "".join(self.out)[:MAX_OUTPUT], "".join(self.err)[:MAX_OUTPUT], code_rc

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.steps += 1
            if self.steps > MAX_STEPS:
                return
            try:
                self.stmt(stmt)
            except GuestException as exc:
                exc.lineno = exc.lineno or stmt.lineno
                raise

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                self.names[alias.asname or top] = Ref(alias.name if alias.asname else top)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                self.names[alias.asname or alias.name] = Ref(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Assign):
            value = self.eval(node.value)
            for target in node.targets:
                self.assign(target, value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            self.assign(node.target, self.binop(node.op, self.names.get(node.target.id, UNKNOWN), self.eval(node.value)))
        elif isinstance(node, ast.Expr):
            self.eval(node.value)
        elif isinstance(node, ast.If):
            test = self.eval(node.test)
            if test is not UNKNOWN:
                self.block(node.body if test else node.orelse)
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            items = self.eval(node.iter)
            if isinstance(items, (list, tuple, str, dict)):
                for item in list(items)[:1000]:
                    self.names[node.target.id] = item
                    self.block(node.body)
        elif isinstance(node, ast.With):
            for item in node.items:
                value = self.eval(item.context_expr)
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, value)
            self.block(node.body)
        elif isinstance(node, ast.Try):
            try:
                self.block(node.body)
            except GuestException:
                if not node.handlers:
                    raise
                self.block(node.handlers[0].body)
            self.block(node.finalbody)
        # anything else (def, class, while, raise, ...) is skipped: docs/emulator.md

    def assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.names[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (tuple, list)):
            for sub, item in zip(target.elts, value):
                self.assign(sub, item)
        elif isinstance(target, ast.Attribute):
            pyguest.set_attribute(self, self.eval(target.value), target.attr, value)

    # ---------------------------------------------------------------------------- expressions
    def eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            return pyguest.BUILTINS.get(node.id, UNKNOWN)
        if isinstance(node, ast.JoinedStr):
            parts = [self.eval(v) for v in node.values]
            if UNKNOWN in parts or sum(len(str(p)) for p in parts) > MAX_OUTPUT:
                return UNKNOWN
            return "".join(str(p) for p in parts)
        if isinstance(node, ast.FormattedValue):
            shown = self.eval(node.value)
            return UNKNOWN if shown is UNKNOWN else (repr(shown) if node.conversion == ord("r") else str(shown))
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.eval(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values) if k is not None}
        if isinstance(node, ast.Attribute):
            return pyguest.attribute(self, self.eval(node.value), node.attr)
        if isinstance(node, ast.Call):
            func = self.eval(node.func)
            args = [self.eval(a) for a in node.args if not isinstance(a, ast.Starred)]
            kwargs = {k.arg: self.eval(k.value) for k in node.keywords if k.arg}
            return pyguest.call(self, func, args, kwargs)
        if isinstance(node, ast.BoolOp):
            value = UNKNOWN
            for sub in node.values:
                value = self.eval(sub)
                if value is UNKNOWN or (isinstance(node.op, ast.Or) == bool(value)):
                    return value
            return value
        if isinstance(node, ast.UnaryOp):
            inner = self.eval(node.operand)
            if inner is UNKNOWN:
                return UNKNOWN
            if isinstance(node.op, ast.Not):
                return not inner
            return -inner if isinstance(node.op, ast.USub) and isinstance(inner, (int, float)) else UNKNOWN
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.Compare):
            left = self.eval(node.left)
            for op, comparator in zip(node.ops, node.comparators):
                right = self.eval(comparator)
                if left is UNKNOWN or right is UNKNOWN:
                    return UNKNOWN
                try:
                    if not COMPARE[type(op)](left, right):
                        return False
                except TypeError:
                    return UNKNOWN
                left = right
            return True
        if isinstance(node, ast.IfExp):
            test = self.eval(node.test)
            return UNKNOWN if test is UNKNOWN else self.eval(node.body if test else node.orelse)
        if isinstance(node, ast.Subscript):
            return pyguest.subscript(self.eval(node.value), self.eval(node.slice))
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.eval(p) for p in (node.lower, node.upper, node.step)]
            return UNKNOWN if UNKNOWN in parts else slice(*parts)
        return UNKNOWN

    @staticmethod
    def binop(op: ast.operator, left: Any, right: Any) -> Any:
        if left is UNKNOWN or right is UNKNOWN or type(op) not in BINOPS:
            return UNKNOWN
        sized = (str, bytes, list, tuple)
        if isinstance(op, ast.Mult):  # a sequence times a number: bounded like everything the guest keeps
            seq, times = (left, right) if isinstance(left, sized) else (right, left)
            if isinstance(seq, sized) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                return UNKNOWN
        if isinstance(op, ast.Add) and isinstance(left, sized) and isinstance(right, sized):
            if len(left) + len(right) > MAX_OUTPUT:
                return UNKNOWN
        try:
            return BINOPS[type(op)](left, right)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return UNKNOWN


def run_python(state: State, args: list[str]) -> Result:
    """python [options] (-c CODE | -V | -m MODULE | SCRIPT) ..."""
    index = 0
    while index < len(args) and args[index] in ("-u", "-B", "-E", "-I", "-s", "-S", "-O", "-X", "-W"):
        index += 2 if args[index] in ("-X", "-W") else 1
    if index >= len(args):
        return "", "", 0  # the interactive interpreter reads an empty stdin and ends
    first = args[index]
    if first in ("-V", "--version"):
        return f"Python {PYTHON_VERSION}\n", "", 0
    if first == "-c":
        if index + 1 >= len(args):
            return "", "Argument expected for the -c option\nusage: python [option] ... [-c cmd | -m mod | file | -] " \
                       "[arg] ...\nTry `python -h' for more information.\n", 2
        return Interpreter(state).run(args[index + 1])
    if first == "-m":
        return "", "", 0  # modules (pip, http.server, ...) are not modelled: docs/emulator.md
    path = normalize(first)
    try:
        script = state.files.read(path).decode("utf-8", "replace")
    except OSError:
        return "", f"python: can't open file '{path}': [Errno 2] No such file or directory\n", 2
    return Interpreter(state).run(script, filename=path)
