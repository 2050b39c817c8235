"""YAML text to plain Python values, with the line of every key path.

Only plain YAML is accepted: mappings with string keys, lists, strings, numbers, booleans and null.
Hostile or surprising input (anchors and aliases, deep nesting, huge files, duplicate keys, custom
tags) becomes a `Problem` naming the line; nothing here raises on bad input or touches the disk.

Key paths look like `targets[1].threads`, `mqtt.port`, `models.mobilenet.deadline_ms`; the empty
path is the top level.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import Problem

log = logging.getLogger(__name__)

MAX_BYTES = 256 << 10  # real configs and policies are a few KiB; parsing is pure Python
MAX_DEPTH = 32
FILE_PATH = "(file)"  # the key path shown for problems that concern the whole file


class _Invalid:
    """A value that already has a problem reported: later checks skip it silently."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()

_T = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR, _NULL = _T + "map", _T + "seq", _T + "str", _T + "null"
_ALIAS, _ANCHOR = "!edgeoffload/alias", "!edgeoffload/anchor"
_MARKER_MESSAGES = {
    _ALIAS: "YAML aliases (*name) are not allowed: write the value out in full",
    _ANCHOR: "YAML anchors (&name) are not allowed: write the value out in full",
}
_CONSTRUCT = yaml.constructor.SafeConstructor()
_SCALARS = {
    _STR: _CONSTRUCT.construct_yaml_str,
    _T + "int": _CONSTRUCT.construct_yaml_int,
    _T + "float": _CONSTRUCT.construct_yaml_float,
    _T + "bool": _CONSTRUCT.construct_yaml_bool,
    _NULL: _CONSTRUCT.construct_yaml_null,
    _T + "timestamp": lambda node: node.value,  # `2024-05-01` stays the string the user wrote
}


@dataclass
class Document:
    """One parsed file: its value (INVALID when it could not be read as YAML), key lines and problems."""

    source: str
    value: Any = INVALID
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    digest: str = ""  # first 12 hex digits of the sha256 of the file's bytes
    text: str = ""  # the decoded text, once it decoded


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parent_path(path: str) -> str:
    """`targets[1].threads` -> `targets[1]` -> `targets` -> `` (the top level)."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def read_document(path: str | Path) -> Document:
    """Read and parse a file; a file that cannot be read is a problem, not an exception."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        reason = e.strerror or str(e)
        return Document(source, problems=[Problem(source, 1, FILE_PATH, f"cannot read the file: {reason}")])
    return parse_yaml(data, source)


def parse_yaml(data: bytes | str, source: str) -> Document:
    """Parse YAML bytes or text into a Document; every problem found is in `Document.problems`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    doc = Document(source, digest=hashlib.sha256(raw).hexdigest()[:12])
    if len(raw) > MAX_BYTES:
        limit = f"{MAX_BYTES // 1024} KiB ({MAX_BYTES} bytes)"
        return _fail(doc, 1, f"file is larger than {limit}: refusing to read it")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return _fail(doc, raw.count(b"\n", 0, e.start) + 1, f"not UTF-8 text (byte {e.start})")
    doc.text = text
    node = _compose(text, doc)
    if doc.problems:
        return doc
    if node is None or node.tag == _NULL:
        return _fail(doc, 1, "file is empty: expected a mapping that starts with 'version: 1'")
    value = _Converter(doc).convert(node, "")
    if isinstance(value, dict):
        doc.value = value
    elif value is not INVALID:
        _fail(doc, _line(node), f"the top level must be a mapping (key: value lines), got {_kind(value)}")
    return doc


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else repr(value)


def _fail(doc: Document, line: int, message: str) -> Document:
    doc.problems.append(Problem(doc.source, line, FILE_PATH, message))
    return doc


def _compose(text: str, doc: Document) -> Node | None:
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_node()
    except _TooDeep as e:
        _fail(doc, e.line, f"nested deeper than {MAX_DEPTH} levels")
    except yaml.MarkedYAMLError as e:
        _fail(doc, *_syntax_problem(e))
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, max(e.position, 0)) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        _fail(doc, line, f"invalid YAML: control character U+{code:04X} is not allowed")
    except yaml.YAMLError as e:  # no mark: rare, but never a traceback
        _fail(doc, 1, f"invalid YAML: {e}")
    finally:
        if loader is not None:
            loader.dispose()
    return None


def _syntax_problem(e: yaml.MarkedYAMLError) -> tuple[int, str]:
    """(line, message) for a YAML syntax error, naming where the broken construct started."""
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else 1
    context = e.context
    if context and e.context_mark and e.context_mark.line + 1 != line:
        context = f"{context} (from line {e.context_mark.line + 1})"
    what = ", ".join(str(p) for p in (context, e.problem) if p)
    return line, f"invalid YAML: {what}"


class _TooDeep(Exception):
    """Nesting past MAX_DEPTH: composing stops at once (reading on is what deep input attacks)."""

    def __init__(self, line: int):
        super().__init__(line)
        self.line = line


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer, but anchors and aliases become marker nodes (never expanded) and
    nesting deeper than MAX_DEPTH stops composing."""

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self.get_event()
            return _marker(_ALIAS, event)
        is_collection = isinstance(event, CollectionStartEvent)
        if is_collection and self._depth >= MAX_DEPTH:
            raise _TooDeep(event.start_mark.line + 1)
        anchored = event.anchor is not None
        event.anchor = None  # never registered, so no alias can ever expand it
        self._depth += is_collection
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= is_collection
        return _marker(_ANCHOR, event) if anchored else node


def _marker(tag: str, event: Any) -> Node:
    return ScalarNode(tag, "", event.start_mark, event.end_mark)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class _Converter:
    """Nodes to plain values; records the line of every key path and reports what is not plain YAML."""

    def __init__(self, doc: Document):
        self.doc = doc

    def report(self, line: int, path: str, message: str) -> Any:
        self.doc.problems.append(Problem(self.doc.source, line, path or FILE_PATH, message))
        return INVALID

    def convert(self, node: Node, path: str) -> Any:
        self.doc.lines.setdefault(path, _line(node))
        if node.tag in _MARKER_MESSAGES:
            return self.report(_line(node), path, _MARKER_MESSAGES[node.tag])
        if isinstance(node, MappingNode) and node.tag == _MAP:
            return self._mapping(node, path)
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            return [self.convert(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode) and node.tag in _SCALARS:
            return self._scalar(node, path)
        return self.report(_line(node), path, f"YAML tag {node.tag!r} is not allowed: use plain values")

    def _mapping(self, node: MappingNode, path: str) -> Any:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is INVALID:
                continue
            child, line = join(path, key), _line(key_node)
            if key in first_line:
                self.report(line, child, f"duplicate key: already given at line {first_line[key]}")
                continue
            first_line[key] = line
            self.doc.lines[child] = line
            out[key] = self.convert(value_node, child)
        return out

    def _key(self, node: Node, path: str) -> Any:
        if node.tag in _MARKER_MESSAGES:
            return self.report(_line(node), path, _MARKER_MESSAGES[node.tag])
        if isinstance(node, ScalarNode) and node.tag == _STR:
            return node.value
        if isinstance(node, ScalarNode):
            return self.report(_line(node), path, f"key {node.value!r} is not a string: quote it ('{node.value}':)")
        return self.report(_line(node), path, "keys must be plain strings, not lists or mappings")

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        try:
            return _SCALARS[node.tag](node)
        except (ValueError, ArithmeticError, yaml.YAMLError):
            return self.report(_line(node), path, f"cannot read {node.value!r} as {node.tag.rpartition(':')[2]}")
