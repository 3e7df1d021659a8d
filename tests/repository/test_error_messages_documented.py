"""Every error and warning message of the library can be found in the docs, with its explanation.

The messages are read from the source of ``torch_dash_optim/`` (``conftest.py`` aside) with
:mod:`ast`: the first argument of every ``raise SomeError(...)``, of every ``warnings.warn(...)``
and of every ``parser.error(...)`` (the command line's errors). The argument may be a string,
an f-string, a concatenation of them, a local variable assigned one of these in the same
function, or a call to a function of the same module that returns one (``_reentry(...)``).

**How f-strings are matched.** A message is cut at each replacement field (``{name}``): what is
left are its literal pieces, each with its whitespace collapsed and stripped. The *key* of the
message is its longest piece when that has three words or more; otherwise (``unknown model
{name!r}; use one of {names}``) it is the whole message with each field written ``…``
(``unknown model …; use one of …``). ``docs/troubleshooting.rst``
must hold the key verbatim, once its own text is read the same way (whitespace collapsed, reST's
double backquotes and backslash escapes removed), so a reader who searches the site for the text
of the message lands on the entry that explains it. The page writes every field as ``…``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "torch_dash_optim"
PAGE = ROOT / "docs" / "troubleshooting.rst"


@dataclass(frozen=True)
class Message:
    where: str  # "path:line"
    kind: str  # the exception class, or "warn"
    pieces: tuple[str, ...]  # the literal pieces, whitespace collapsed

    text: str  # the message with each field written …, whitespace collapsed

    @property
    def key(self) -> str:
        longest = max(self.pieces, key=len, default="")
        return longest if len(longest.split()) >= 3 else self.text


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _pieces(
    node: ast.AST | None, names: dict[str, list[str | None]], functions: dict[str, ast.AST]
) -> list[str | None] | None:
    """The literal parts of a string expression, ``None`` for each replacement field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pieces(node.left, names, functions), _pieces(node.right, names, functions)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
        returns = [n for n in ast.walk(functions[node.func.id]) if isinstance(n, ast.Return)]
        return _pieces(returns[0].value, {}, {}) if len(returns) == 1 else None
    return None


def _split(parts: list[str | None]) -> tuple[str, ...]:
    text = "".join("\0" if p is None else p for p in parts)
    return tuple(piece for piece in (_collapse(p) for p in text.split("\0")) if piece)


def extract_messages(source: str, where: str) -> list[Message]:
    """The error and warning messages raised in one module's source."""
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found: dict[int, Message] = {}
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in scopes:
        names: dict[str, list[str | None]] = {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _pieces(node.value, {}, functions)
                if value:
                    names[node.targets[0].id] = value
        for node in ast.walk(scope):
            call, kind = None, ""
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                call = node.exc
                kind = getattr(call.func, "id", None) or getattr(call.func, "attr", None) or ast.unparse(call.func)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "warn":
                call, kind = node, "warn"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "error":
                call, kind = node, "error"
            if call is None or not call.args or node.lineno in found:
                continue
            parts = _pieces(call.args[0], names, functions)
            if parts is not None and _split(parts):
                text = _collapse("".join("…" if p is None else p for p in parts))
                found[node.lineno] = Message(f"{where}:{node.lineno}", kind, _split(parts), text)
    return [found[line] for line in sorted(found)]


def all_messages() -> list[Message]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "conftest.py":
            out += extract_messages(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    return out


def page_text(rst: str) -> str:
    """The page's text as a search sees it: double backquotes and backslash escapes removed."""
    return _collapse(rst.replace("``", "").replace("\\ ", "").replace("\\", ""))


def test_every_message_can_be_found_on_the_troubleshooting_page() -> None:
    messages = all_messages()
    assert len(messages) >= 100, len(messages)  # the extraction finds the messages
    text = page_text(PAGE.read_text(encoding="utf-8"))
    missing = [f"{m.where} [{m.kind}] {m.key!r}" for m in messages if m.key not in text]
    assert not missing, (
        f"{len(missing)} of {len(messages)} messages are not on docs/troubleshooting.rst (add an entry "
        "that quotes the message, fields written as …, with its cause and what to change):\n" + "\n".join(missing)
    )


def test_the_extraction_reads_each_form_of_message() -> None:
    source = """
import warnings
def _why(x):
    return f"the helper says {x} is wrong"
def f(x, err):
    if x:
        raise ValueError(f"x={x} must be positive; got " + "a negative one")
    msg = f"lr={x} is too large for this model"
    if err:
        raise RuntimeError(msg) from err
    warnings.warn("a plain warning about something", UserWarning)
    parser.error(f"--out {x} is a file, not a folder")
    raise TypeError(_why(x))
    raise KeyError(f"unknown name {x!r}; use one of {sorted(x)}")
    raise err
"""
    found = extract_messages(source, "m.py")
    assert [(m.kind, m.pieces) for m in found] == [
        ("ValueError", ("x=", "must be positive; got a negative one")),
        ("RuntimeError", ("lr=", "is too large for this model")),
        ("warn", ("a plain warning about something",)),
        ("error", ("--out", "is a file, not a folder")),
        ("TypeError", ("the helper says", "is wrong")),
        ("KeyError", ("unknown name", "; use one of")),
    ]
    assert found[0].key == "must be positive; got a negative one"
    assert found[-1].key == "unknown name …; use one of …"  # no piece of three words: the whole text
    assert page_text("``x=…`` must\n   be ``positive;`` got") == "x=… must be positive; got"
