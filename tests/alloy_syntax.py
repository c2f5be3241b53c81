"""A reader for the Grafana Alloy configuration syntax, for offline checks of config.alloy.

Alloy cannot be installed on the project's machines (no Debian, PyPI or npm package), so the test
reads the file with the grammar Alloy documents (``get-started/configuration-syntax``): a body of
attributes (``name = expr``) and blocks (``name.parts "label" { body }``); expressions are literals,
arrays, objects, references (``local.file_match.ray.targets``), calls (``sys.env("X")``) and binary
operators. Literal values come back as Python values; references and calls as ``Reference`` and
``Call`` objects, so a test can check what each refers to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%^<>!])
  | (?P<punct>[{}\[\](),.=:])
    """,
    re.S | re.X,
)


class AlloySyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    path: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    function: tuple[str, ...]
    arguments: tuple[Any, ...]


@dataclass
class Block:
    name: str
    label: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    line: int = 0

    def children(self, name: str) -> list[Block]:
        return [block for block in self.blocks if block.name == name]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, position, line = [], 0, 1
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise AlloySyntaxError(f"line {line}: unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group(), line))
        line += match.group().count("\n")
        position = match.end()
    tokens.append(("eof", "", line))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise AlloySyntaxError(f"line {token[2]}: expected {value or kind}, found {token[1]!r}")
        self.index += 1
        return token

    def body(self, closing: str | None) -> Block:
        block = Block("", None)
        while not (self.peek()[0] == "eof" if closing is None else self.peek()[1] == closing):
            _kind, name, line = self.take(kind="ident")
            if self.peek()[1] == "=":
                self.take("=")
                if name in block.attributes:
                    raise AlloySyntaxError(f"line {line}: attribute {name} set twice")
                block.attributes[name] = self.expression()
                continue
            parts = [name]
            while self.peek()[1] == ".":
                self.take(".")
                parts.append(self.take(kind="ident")[1])
            label = json.loads(self.take(kind="string")[1]) if self.peek()[0] == "string" else None
            self.take("{")
            inner = self.body("}")
            self.take("}")
            block.blocks.append(Block(".".join(parts), label, inner.attributes, inner.blocks, line))
        return block

    def expression(self) -> Any:
        left = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] != "!":
            operator = self.take()[1]
            left = Call(("operator", operator), (left, self.unary()))
        return left

    def unary(self) -> Any:
        if self.peek()[1] in ("!", "-"):
            operator = self.take()[1]
            return Call(("operator", operator), (self.unary(),))
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while True:
            if self.peek()[1] == "." and isinstance(value, Reference):
                self.take(".")
                value = Reference((*value.path, self.take(kind="ident")[1]))
            elif self.peek()[1] == "(" and isinstance(value, Reference):
                self.take("(")
                arguments = []
                while self.peek()[1] != ")":
                    arguments.append(self.expression())
                    if self.peek()[1] != ")":
                        self.take(",")
                self.take(")")
                value = Call(value.path, tuple(arguments))
            elif self.peek()[1] == "[":
                self.take("[")
                value = Call(("index",), (value, self.expression()))
                self.take("]")
            else:
                return value

    def primary(self) -> Any:
        kind, text, line = self.take()
        if kind == "string":
            return json.loads(text)
        if kind == "raw":
            return text[1:-1]
        if kind == "number":
            return float(text) if "." in text or "e" in text.lower() else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "null": None}.get(text, Reference((text,)))
        if text == "(":
            value = self.expression()
            self.take(")")
            return value
        if text == "[":
            items = []
            while self.peek()[1] != "]":
                items.append(self.expression())
                if self.peek()[1] != "]":
                    self.take(",")
            self.take("]")
            return items
        if text == "{":
            mapping: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key_kind, key, key_line = self.take()
                if key_kind not in ("ident", "string"):
                    raise AlloySyntaxError(f"line {key_line}: object key expected, found {key!r}")
                mapping[json.loads(key) if key_kind == "string" else key] = (self.take("="), self.expression())[1]
                if self.peek()[1] != "}":
                    self.take(",")
            self.take("}")
            return mapping
        raise AlloySyntaxError(f"line {line}: unexpected {text!r}")


def parse_alloy(text: str) -> list[Block]:
    """The top-level blocks of an Alloy configuration; raises ``AlloySyntaxError`` naming the line."""
    parser = _Parser(text)
    root = parser.body(None)
    if root.attributes:
        raise AlloySyntaxError(f"top-level attributes are not allowed: {sorted(root.attributes)}")
    return root.blocks


def references(value: Any) -> list[tuple[str, ...]]:
    """Every reference path inside an expression (calls' own names excluded)."""
    if isinstance(value, Reference):
        return [value.path]
    if isinstance(value, Call):
        return [path for argument in value.arguments for path in references(argument)]
    if isinstance(value, list):
        return [path for item in value for path in references(item)]
    if isinstance(value, dict):
        return [path for item in value.values() for path in references(item)]
    return []
