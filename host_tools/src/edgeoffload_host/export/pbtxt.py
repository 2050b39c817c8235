"""Triton's ``config.pbtxt`` (protobuf text format of ``ModelConfig``): the subset we write, and a parser
for that subset so a written config can be read back and checked against the model's real tensors.

Parsed messages are dicts; a field given once is its value, a field given more than once or in ``[...]``
list syntax is a list; enum values are ``Ident`` (a str), strings are plain ``str``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# OIP datatype (what our endpoint advertises) -> Triton's ModelConfig DataType
TRITON_TYPES = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
                "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
                "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
                "BYTES": "TYPE_STRING"}


class PbtxtError(ValueError):
    """Text that is not in the subset of the protobuf text format this module reads."""


class Ident(str):
    """An enum value or other bare identifier (``TYPE_FP32``, ``KIND_CPU``)."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str  # OIP name: UINT8, FP32 ...
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelConfig:
    """What we put in a config.pbtxt: ``backend`` (TFLite) or ``platform`` (tensorflow_savedmodel)."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    backend: str | None = None
    platform: str | None = None
    instance_kind: str | None = None  # KIND_CPU, KIND_GPU, or None for Triton's default
    comment: str = ""


def _quote(text: str) -> str:
    return json.dumps(text)  # JSON string escapes are valid text-format escapes for what we write


def _tensor_block(t: Tensor) -> str:
    if t.datatype not in TRITON_TYPES:
        raise PbtxtError(f"tensor {t.name!r}: datatype {t.datatype} has no Triton type")
    dims = ", ".join(str(d) for d in t.dims)
    return (f"  {{\n    name: {_quote(t.name)}\n    data_type: {TRITON_TYPES[t.datatype]}\n"
            f"    dims: [ {dims} ]\n  }}")


def render(config: ModelConfig) -> str:
    lines = [f"# {line}" for line in config.comment.splitlines()]
    lines.append(f"name: {_quote(config.name)}")
    if config.backend:
        lines.append(f"backend: {_quote(config.backend)}")
    if config.platform:
        lines.append(f"platform: {_quote(config.platform)}")
    lines.append("max_batch_size: 0")
    lines.append("input [\n" + ",\n".join(_tensor_block(t) for t in config.inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(_tensor_block(t) for t in config.outputs) + "\n]")
    if config.instance_kind:
        lines.append(f"instance_group [ {{ count: 1 kind: {config.instance_kind} }} ]")
    return "\n".join(lines) + "\n"


_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\]:,;<>])
""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PbtxtError(f"line {text.count(chr(10), 0, pos) + 1}: unexpected {text[pos]!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise PbtxtError(f"unexpected end of text{f', expected {value!r}' if value else ''}")
        if value is not None and token[1] != value:
            raise PbtxtError(f"line {token[2]}: expected {value!r}, got {token[1]!r}")
        self.i += 1
        return token

    def message(self, closing: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while (token := self.peek()) is not None and token[1] != closing:
            kind, name, line = self.take()
            if kind != "ident":
                raise PbtxtError(f"line {line}: expected a field name, got {name!r}")
            if self.peek() is not None and self.peek()[1] == ":":
                self.take(":")
            value = self.value()
            if name in fields:
                old = fields[name]
                fields[name] = (old if isinstance(old, list) else [old]) + (value if isinstance(value, list)
                                                                             else [value])
            else:
                fields[name] = value
            if self.peek() is not None and self.peek()[1] in ",;":
                self.take()
        if closing is not None:
            self.take(closing)
        return fields

    def value(self) -> Any:
        kind, text, line = self.take()
        if text in ("{", "<"):
            return self.message("}" if text == "{" else ">")
        if text == "[":
            items = []
            while self.peek() is not None and self.peek()[1] != "]":
                items.append(self.value())
                if self.peek() is not None and self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return items
        if kind == "string":
            inner = text[1:-1]
            if text[0] == "'":
                inner = inner.replace("\\'", "'").replace('"', '\\"')
            try:
                return json.loads(f'"{inner}"')
            except json.JSONDecodeError as e:
                raise PbtxtError(f"line {line}: string {text} uses escapes this parser does not read") from e
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "ident":
            return Ident(text)
        raise PbtxtError(f"line {line}: unexpected {text!r}")


def parse(text: str) -> dict[str, Any]:
    """Parse the text-format subset we write (and a little more: comments, `<>`, `;`, repeated fields)."""
    return _Parser(text).message(None)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def tensors_of(parsed: dict[str, Any], which: str) -> tuple[Tensor, ...]:
    """The ``input`` or ``output`` entries of a parsed config as Tensors (OIP datatypes)."""
    by_triton = {v: k for k, v in TRITON_TYPES.items()}
    out = []
    for entry in _as_list(parsed.get(which, [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PbtxtError(f"{which}: each entry needs a name")
        datatype = by_triton.get(str(entry.get("data_type")))
        if datatype is None:
            raise PbtxtError(f"{which} {entry['name']!r}: unknown data_type {entry.get('data_type')!r}")
        out.append(Tensor(entry["name"], datatype, tuple(int(d) for d in _as_list(entry.get("dims", [])))))
    return tuple(out)


def check(text: str, name: str, inputs: Sequence[Tensor], outputs: Sequence[Tensor]) -> list[str]:
    """Problems with a config's text against the model's real tensors (empty when it matches)."""
    try:
        parsed = parse(text)
        got_in, got_out = tensors_of(parsed, "input"), tensors_of(parsed, "output")
    except PbtxtError as e:
        return [f"does not parse: {e}"]
    problems = []
    if parsed.get("name") != name:
        problems.append(f"name {parsed.get('name')!r}, the model directory is {name!r}")
    if parsed.get("max_batch_size") != 0:
        problems.append(f"max_batch_size {parsed.get('max_batch_size')!r}, expected 0 (dims include the batch)")
    for which, got, want in (("input", got_in, tuple(inputs)), ("output", got_out, tuple(outputs))):
        if got != want:
            problems.append(f"{which} {[(t.name, t.datatype, list(t.dims)) for t in got]} but the model has "
                            f"{[(t.name, t.datatype, list(t.dims)) for t in want]}")
    return problems
