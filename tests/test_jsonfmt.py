"""Unit tests for manyfest.jsonfmt: Go's json.Compact (+ HTML escaping) and json.Indent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyfest.jsonfmt import compact, indent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b' { "a" : 1 ,\n\t"b" : [ 1 , 2 ] }\r\n', b'{"a":1,"b":[1,2]}'),
        (b'{"a <b>":"x & y"}', b'{"a \\u003cb\\u003e":"x \\u0026 y"}'),
        (b'{"s": "a\\"b < c\\\\", "t" : ">"}', b'{"s":"a\\"b \\u003c c\\\\","t":"\\u003e"}'),
        (b'{"s": "  two  spaces\\t " }', b'{"s":"  two  spaces\\t "}'),
        ('{"s": "\u2028 \u2029"}'.encode(), b'{"s":"\\u2028 \\u2029"}'),
        ('{"s": "é\u2027"}'.encode(), '{"s":"é\u2027"}'.encode()),
        (b'[ 1.50 , -0.0 , 1E+2 , true , false , null , "\\u00e9" ]',
         b'[1.50,-0.0,1E+2,true,false,null,"\\u00e9"]'),
        (b'{ "a" : { } , "b" : [ ] }', b'{"a":{},"b":[]}'),
        (b'"only a string"', b'"only a string"'),
        (b' 12 ', b"12"),
        (b'{"k":"\\\\"  ,  "l" : "\\\\\\"" }', b'{"k":"\\\\","l":"\\\\\\""}'),
    ],
)
def test_compact(raw: bytes, expected: bytes) -> None:
    assert compact(raw) == expected


def test_compact_without_html_escaping() -> None:
    raw = '{ "a" : "<&>\u2028" }'.encode()
    assert compact(raw, escape_html=False) == '{"a":"<&>\u2028"}'.encode()


def test_indent_like_go() -> None:
    raw = b'{"a":{},"b":[],"c":[1.50,"\\u00e9",true,null],"d":{"e":[{}]},"f":"x  y"}'
    assert indent(raw) == (
        b"{\n"
        b'\t"a": {},\n'
        b'\t"b": [],\n'
        b'\t"c": [\n'
        b"\t\t1.50,\n"
        b'\t\t"\\u00e9",\n'
        b"\t\ttrue,\n"
        b"\t\tnull\n"
        b"\t],\n"
        b'\t"d": {\n'
        b'\t\t"e": [\n'
        b"\t\t\t{}\n"
        b"\t\t]\n"
        b"\t},\n"
        b'\t"f": "x  y"\n'
        b"}"
    )


def test_indent_reindents_spaced_input() -> None:
    raw = b'{\n   "schemaVersion": 2,\n   "manifests": [\n      {"size": 1}\n   ]\n}'
    assert indent(raw) == (
        b'{\n\t"schemaVersion": 2,\n\t"manifests": [\n\t\t{\n\t\t\t"size": 1\n\t\t}\n\t]\n}'
    )


def test_indent_keeps_non_ascii_and_escapes_verbatim() -> None:
    raw = '{"a\\/":"\\/é\\u2028","n":1E+2}'.encode()
    assert indent(raw) == '{\n\t"a\\/": "\\/é\\u2028",\n\t"n": 1E+2\n}'.encode()


@pytest.mark.parametrize(
    ("raw", "expected"), [(b"{}", b"{}"), (b"[]", b"[]"), (b"\n [ ]", b"[]"), (b"1", b"1")]
)
def test_indent_scalars_and_empty(raw: bytes, expected: bytes) -> None:
    assert indent(raw) == expected


def test_indent_other_units() -> None:
    raw = b'{"a":[1]}'
    assert indent(raw, "  ") == b'{\n  "a": [\n    1\n  ]\n}'
    assert indent(raw, " ") == b'{\n "a": [\n  1\n ]\n}'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":1}\n', b'{\n\t"a": 1\n}\n'),
        (b' [ ] ', b"[] "),
        (b'\n{"a":[]}\r\n \t', b'{\n\t"a": []\n}\r\n \t'),
    ],
)
def test_indent_keeps_trailing_whitespace_like_go(raw: bytes, expected: bytes) -> None:
    # encoding/json Indent: "leading space characters ... are dropped, trailing space
    # characters at the end of src are preserved and copied to dst". `docker manifest inspect`
    # json.Indent()s the registry's raw body, so a body ending in "\n" prints a blank line.
    assert indent(raw) == expected


# --- properties -------------------------------------------------------------------------------

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from(["<", ">", "&", '"', "\\", "\u2028", "\u2029", " ", "\t", "\n"]),
    max_size=12,
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)
_layout = st.fixed_dictionaries(
    {
        "indent": st.one_of(st.none(), st.integers(0, 4), st.sampled_from(["\t", " \t "])),
        "separators": st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t"), (",", " : ")]),
        "ensure_ascii": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None)
@given(value=_json, layout=_layout)
def test_compact_round_trip(value: Any, layout: dict[str, Any]) -> None:
    raw = json.dumps(value, **layout).encode()
    small = compact(raw)
    assert json.loads(small) == value
    assert not any(c in small for c in b"<>&")
    assert compact(indent(small)) == small
    assert compact(small) == small
    assert compact(raw, escape_html=False) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=layout["ensure_ascii"]
    ).encode()
