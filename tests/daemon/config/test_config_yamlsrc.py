"""YAML to plain values with key lines; hostile input becomes problems with lines, never a traceback."""

from __future__ import annotations

import hashlib

import pytest

from edgeoffload.config.yamlsrc import INVALID, MAX_BYTES, parent_path, parse_yaml, read_document


def problems(text: str | bytes) -> list[str]:
    return [str(p) for p in parse_yaml(text, "t.yaml").problems]


def test_values_and_line_of_every_key_path():
    text = "a: 1\nb:\n  - x: 2.5\n    y: [true, null]\n  - z\nc: {d: '2024-05-01', e: 2024-05-01}\n"
    doc = parse_yaml(text, "t")
    assert doc.problems == []
    assert doc.value == {"a": 1, "b": [{"x": 2.5, "y": [True, None]}, "z"], "c": {"d": "2024-05-01", "e": "2024-05-01"}}
    assert doc.lines == {
        "": 1, "a": 1, "b": 2, "b[0]": 3, "b[0].x": 3, "b[0].y": 4, "b[0].y[0]": 4, "b[0].y[1]": 4,
        "b[1]": 5, "c": 6, "c.d": 6, "c.e": 6,
    }


def test_digest_is_the_sha256_of_the_bytes():
    data = b"a: 1\n"
    assert parse_yaml(data, "t").digest == hashlib.sha256(data).hexdigest()[:12]
    assert parse_yaml("a: 1\n", "t").digest == parse_yaml(data, "t").digest


@pytest.mark.parametrize("path, parent", [("targets[1].threads", "targets[1]"), ("targets[1]", "targets"),
                                          ("models.m.deadline_ms", "models.m"), ("mqtt", "")])
def test_parent_path(path, parent):
    assert parent_path(path) == parent


def test_alias_and_anchor_are_refused_and_never_expanded():
    laughs = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    assert problems(laughs) == [
        "t.yaml:1: a: YAML anchors (&name) are not allowed: write the value out in full",
        "t.yaml:2: b: YAML anchors (&name) are not allowed: write the value out in full",
        "t.yaml:3: c[0]: YAML aliases (*name) are not allowed: write the value out in full",
        "t.yaml:3: c[1]: YAML aliases (*name) are not allowed: write the value out in full",
    ]


def test_undefined_alias_is_a_problem_not_a_crash():
    message = "t.yaml:1: a: YAML aliases (*name) are not allowed: write the value out in full"
    assert problems("a: *nowhere\n") == [message]


@pytest.mark.parametrize("depth, ok", [(32, True), (33, False)])
def test_nesting_limit(depth, ok):
    text = "\na: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n"  # the top-level mapping is level 1
    assert problems(text) == ([] if ok else ["t.yaml:2: (file): nested deeper than 32 levels"])


def test_very_deep_nesting_is_refused_quickly():
    doc = parse_yaml("a: " + "[" * 200_000, "t.yaml")
    assert doc.value is INVALID
    assert [str(p) for p in doc.problems] == ["t.yaml:1: (file): nested deeper than 32 levels"]


def test_oversize_file_is_not_parsed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * MAX_BYTES + b"\n")
    doc = read_document(path)
    assert doc.value is INVALID
    assert [str(p) for p in doc.problems] == [
        f"{path}:1: (file): file is larger than 256 KiB (262144 bytes): refusing to read it"
    ]


def test_exactly_the_limit_is_read(tmp_path):
    data = b"a: " + b"x" * (MAX_BYTES - 4) + b"\n"
    assert len(data) == MAX_BYTES
    assert parse_yaml(data, "t").problems == []


def test_duplicate_key_names_both_lines():
    assert problems("a: 1\nb: 2\na: 3\n") == ["t.yaml:3: a: duplicate key: already given at line 1"]


@pytest.mark.parametrize("text, message", [
    ("1: a\n", "t.yaml:1: (file): key '1' is not a string: quote it ('1':)"),
    ("on: a\n", "t.yaml:1: (file): key 'on' is not a string: quote it ('on':)"),
    ("~: a\n", "t.yaml:1: (file): key '~' is not a string: quote it ('~':)"),
    ("? [a]\n: b\n", "t.yaml:1: (file): keys must be plain strings, not lists or mappings"),
])
def test_non_string_keys(text, message):
    assert problems(text) == [message]


@pytest.mark.parametrize("text, tag", [
    ("a: !foo 1\n", "!foo"),
    ("a: !!binary aGk=\n", "tag:yaml.org,2002:binary"),
    ("a: !!python/object:os.system {}\n", "tag:yaml.org,2002:python/object:os.system"),
])
def test_custom_tags_are_refused(text, tag):
    assert problems(text) == [f"t.yaml:1: a: YAML tag {tag!r} is not allowed: use plain values"]


@pytest.mark.parametrize("text, message", [
    ("a: [1\nb: 2\n", "t.yaml:2: (file): invalid YAML: while parsing a flow sequence (from line 1), "
                      "expected ',' or ']', but got ':'"),
    ("a: 1\n b: 2\n", "t.yaml:2: (file): invalid YAML: mapping values are not allowed here"),
    ("a: '\n", "t.yaml:2: (file): invalid YAML: while scanning a quoted scalar (from line 1), "
               "found unexpected end of stream"),
    ("a: 1\n---\nb: 2\n", "t.yaml:2: (file): invalid YAML: expected a single document in the stream "
                          "(from line 1), but found another document"),
    ("a: \x07\n", "t.yaml:1: (file): invalid YAML: control character U+0007 is not allowed"),
    (b"a: 1\n\xff\n", "t.yaml:2: (file): not UTF-8 text (byte 5)"),
])
def test_syntax_errors_are_one_problem_with_a_line(text, message):
    assert problems(text) == [message]


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "---\n", "null\n"])
def test_empty_file(text):
    doc = parse_yaml(text, "t.yaml")
    assert doc.value is INVALID
    assert problems(text) == ["t.yaml:1: (file): file is empty: expected a mapping that starts with 'version: 1'"]


def test_bom_is_accepted():
    assert parse_yaml(b"\xef\xbb\xbfa: 1\n", "t").value == {"a": 1}


def test_missing_file_is_a_problem(tmp_path):
    doc = read_document(tmp_path / "nope.yaml")
    assert [str(p) for p in doc.problems] == [
        f"{tmp_path / 'nope.yaml'}:1: (file): cannot read the file: No such file or directory"
    ]


@pytest.mark.parametrize("text, got", [("- a\n", "a list"), ("a\n", "'a'"), ("3\n", "3")])
def test_top_level_must_be_a_mapping(text, got):
    assert problems(text) == [f"t.yaml:1: (file): the top level must be a mapping (key: value lines), got {got}"]
