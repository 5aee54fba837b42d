"""A small Go-template-like formatter for ``--format`` (docker's ``{{.Field}}`` style).

The language is a strict subset of Go's ``text/template`` as docker's ``--format`` uses it:

* text is printed as written, with ``\\t`` and ``\\n`` (backslash, letter) turned into a tab
  and a newline, as docker's formatter does;
* ``{{.Field}}`` prints a field as text; ``{{json .Field}}`` prints it as JSON;
  ``{{json .}}`` prints every field as one JSON object;
* spaces inside the braces are allowed (``{{ .Field }}``, ``{{ json .Field }}``).

Anything else (pipelines, functions other than ``json``, ``{{-`` trimming, nested fields,
an unclosed ``{{``) is refused when parsed, never evaluated: nothing is ever ``eval``'d.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from manyfest.errors import UsageError

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)?")
_ESCAPES = {"\\t": "\t", "\\n": "\n"}
_ESCAPE_RE = re.compile(r"\\[tn]")


@dataclass(frozen=True, slots=True)
class Value:
    """One field's value: how ``{{.Field}}`` prints it, and what ``{{json .Field}}`` encodes.

    Attributes:
        text: the text printed by ``{{.Field}}``.
        data: a JSON-encodable value (str, int, bool, None, dict, list) for ``{{json ...}}``.
    """

    text: str
    data: object


@dataclass(frozen=True, slots=True)
class _Action:
    field: str
    """The field name; '' for ``.`` (every field)."""
    json: bool


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and field actions, in order.

    Create with :func:`parse`; print with :meth:`render`.
    """

    text: str
    parts: tuple[str | _Action, ...]
    fields: tuple[str, ...]

    def render(self, values: Mapping[str, Value]) -> str:
        """The template with every action replaced by its field's value.

        Args:
            values: a :class:`Value` for every field the template was parsed with.
        """
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif not part.field:
                data = {name: values[name].data for name in self.fields}
                out.append(msgspec.json.encode(data).decode())
            elif part.json:
                out.append(msgspec.json.encode(values[part.field].data).decode())
            else:
                out.append(values[part.field].text)
        return "".join(out)


def parse(text: str, fields: Sequence[str]) -> Template:
    """Parse ``text`` as a template over ``fields``.

    Args:
        text: the template, e.g. ``'{{.Platform}}\\t{{.Digest}}'``.
        fields: the field names an action may name (without the dot), in ``{{json .}}``'s
            key order.

    Raises:
        UsageError: an unknown field (the message names it and lists ``fields``), an action
            this language does not have, or an unclosed ``{{``.
    """
    parts: list[str | _Action] = []
    known = ", ".join(f".{f}" for f in fields)
    at = 0
    for match in _ACTION.finditer(text):
        parts.append(_literal(text[at : match.start()], text))
        parts.append(_action(match.group(1), text, fields, known))
        at = match.end()
    parts.append(_literal(text[at:], text))
    return Template(text, tuple(p for p in parts if p != ""), tuple(fields))


def _literal(chunk: str, text: str) -> str:
    if "{{" in chunk:
        raise UsageError(f"template {text!r}: unclosed action ('{{{{' without '}}}}')",
                         hint="close every {{ with }}, e.g. '{{.Digest}}'")
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], chunk)


def _action(body: str, text: str, fields: Sequence[str], known: str) -> _Action:
    words = body.split()
    as_json = bool(words) and words[0] == "json"
    if as_json:
        words = words[1:]
    example = f" e.g. '{{{{.{fields[0]}}}}}'" if fields else ""
    hint = f"write {{{{.Field}}}} or {{{{json .Field}}}},{example}".rstrip(",")
    match = _FIELD.fullmatch(words[0]) if len(words) == 1 else None
    if match is None:
        raise UsageError(
            f"template {text!r}: unsupported action {{{{{body}}}}}; the fields are {known}",
            hint=hint,
        )
    name = match.group(1) or ""
    if name and name not in fields:
        raise UsageError(
            f"template {text!r}: unknown field .{name}; the fields are {known}", hint=hint
        )
    if not name and not as_json:
        raise UsageError(f"template {text!r}: {{{{.}}}} has no text form; use {{{{json .}}}}",
                         hint=hint)
    return _Action(name, as_json)
