"""Whitespace-only JSON re-layout matching Go's ``encoding/json`` (no re-serialisation).

docker prints and stores manifests through Go's ``json.Indent`` and ``json.Compact``
(``json.Marshal`` compacts the output of a ``MarshalJSON`` method and escapes ``<``, ``>``, ``&``,
U+2028 and U+2029). These functions change only whitespace (and, for ``compact`` with
``escape_html``, those characters inside strings); every token keeps its exact text.
"""

from __future__ import annotations

import re

import msgspec

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[^"]+', re.DOTALL)
_WHITESPACE = re.compile(rb"[ \t\r\n]+")
_HTML = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    "\u2028".encode(): b"\\u2028",
    "\u2029".encode(): b"\\u2029",
}
_HTML_RE = re.compile(b"|".join(re.escape(k) for k in _HTML))


def compact(raw: bytes, *, escape_html: bool = True) -> bytes:
    """Go's ``json.Compact`` (with ``json.Marshal``'s HTML escaping when ``escape_html``).

    Args:
        raw: a JSON document.
        escape_html: escape ``<``, ``>``, ``&``, U+2028 and U+2029 inside strings as Go's
            ``json.Marshal`` does for a ``MarshalJSON`` result.
    """
    out = []
    for match in _TOKENS.finditer(raw):
        token = match.group(0)
        if token.startswith(b'"'):
            out.append(_HTML_RE.sub(lambda m: _HTML[m.group(0)], token) if escape_html else token)
        else:
            out.append(_WHITESPACE.sub(b"", token))
    return b"".join(out)


def escape_html(raw: bytes) -> bytes:
    """Go's ``json.Marshal`` HTML escaping of encoder output (``<`` ``>`` ``&`` U+2028 U+2029).

    Only valid on JSON produced by an encoder: these characters can then only be in strings.
    """
    return _HTML_RE.sub(lambda m: _HTML[m.group(0)], raw)


def indent(raw: bytes, unit: str = "\t") -> bytes:
    """Go's ``json.Indent(dst, raw, "", unit)``: one element per line, ``"key": value``.

    Empty objects and arrays stay ``{}`` and ``[]``, as in Go. Tokens are kept verbatim.
    """
    # Go keeps whitespace trailing the value ("if src ends in a trailing newline, so will dst").
    trailing = raw[len(raw.rstrip(b" \t\r\n")) :]
    spaced = msgspec.json.format(raw, indent=1)
    if unit == " ":
        return spaced + trailing
    lines = spaced.split(b"\n")
    enc = unit.encode()
    return b"\n".join(
        enc * (len(line) - len(line.lstrip(b" "))) + line.lstrip(b" ") for line in lines
    ) + trailing
