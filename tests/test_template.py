"""The ``--format`` template language (:mod:`manyfest.template`): parsing and rendering."""

from __future__ import annotations

import pytest

from manyfest.errors import UsageError
from manyfest.ops.inspect import FIELDS, Row, format_rows, parse_format
from manyfest.platform import Platform
from manyfest.template import Value, parse

VALUES = {
    "Name": Value("web", "web"),
    "Size": Value("2725", 2725),
    "Tags": Value("a=1,b=2", {"a": "1", "b": "2"}),
    "Empty": Value("", None),
}


def render(text: str) -> str:
    return parse(text, list(VALUES)).render(VALUES)


def test_fields_text_and_json() -> None:
    assert render("{{.Name}}") == "web"
    assert render("{{ .Name }}:{{.Size}}") == "web:2725"
    assert render("{{json .Name}} {{ json .Size }}") == '"web" 2725'
    assert render("{{json .Tags}}|{{.Tags}}|{{json .Empty}}|{{.Empty}}|") == (
        '{"a":"1","b":"2"}|a=1,b=2|null||'
    )
    assert render("{{json .}}") == (
        '{"Name":"web","Size":2725,"Tags":{"a":"1","b":"2"},"Empty":null}'
    )


def test_literal_text_and_escapes() -> None:
    assert render("") == ""
    assert render("no actions") == "no actions"
    assert render(r"{{.Name}}\t{{.Size}}\n") == "web\t2725\n"
    assert render("a }} b {{.Name}} }}") == "a }} b web }}"
    assert render("{{.Name}}{{.Name}}") == "webweb"
    # JSON strings are escaped as JSON; text is printed as is.
    quoted = {"Name": Value('say "hi"\n', 'say "hi"\n')}
    assert parse("{{json .Name}}", ["Name"]).render(quoted) == '"say \\"hi\\"\\n"'
    assert parse("{{.Name}}", ["Name"]).render(quoted) == 'say "hi"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{.Nope}}", "template '{{.Nope}}': unknown field .Nope; the fields are .Name, .Size, "
                      ".Tags, .Empty"),
        ("{{json .Nope}}", "unknown field .Nope"),
        ("{{.name}}", "unknown field .name"),
        ("{{.Name", "unclosed action"),
        ("{{.Name}} {{", "unclosed action"),
        ("{{upper .Name}}", "unsupported action {{upper .Name}}; the fields are .Name,"),
        ("{{.Name | printf}}", "unsupported action"),
        ("{{.Tags.a}}", "unsupported action {{.Tags.a}}"),
        ("{{- .Name}}", "unsupported action"),
        ("{{}}", "unsupported action {{}}"),
        ("{{json}}", "unsupported action {{json}}"),
        ("{{Name}}", "unsupported action {{Name}}"),
        ("{{.}}", "{{.}} has no text form; use {{json .}}"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text, list(VALUES))
    assert message in info.value.one_line()
    assert info.value.exit_code == 2
    assert "\n" not in info.value.one_line()


def test_parse_format() -> None:
    assert parse_format("json") == "json"
    assert parse_format("table") == "table"
    template = parse_format("{{.Digest}}")
    assert not isinstance(template, str)
    assert template.fields == FIELDS
    with pytest.raises(UsageError, match="expected json, table or a template"):
        parse_format("yaml")
    with pytest.raises(UsageError, match=r"unknown field \.Arch; the fields are \.Ref, "):
        parse_format("{{.Arch}}")


def test_rows_table_and_template() -> None:
    image = Row("r/a@sha256:1", "sha256:1", 2725, "application/vnd.oci.image.manifest.v1+json",
                Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",)),
                (("org.opencontainers.image.title", "a\tb"),))
    attestation = Row("r/a@sha256:2", "sha256:2", 465, "", Platform("unknown", "unknown"),
                      (("vnd.docker.reference.digest", "sha256:1"),))
    bare = Row("r/a@sha256:3", "sha256:3", 7, "x", None)
    assert not image.is_attestation
    assert attestation.is_attestation  # unknown/unknown with a reference digest
    assert attestation.attestation_for == "sha256:1"
    widths = (32, 11, 10, 45, 26)  # the longest cell + 3, at least 10 (docker's tabwriter)
    expected = [
        ("PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE", "ATTESTATION", "ANNOTATIONS"),
        ("windows/amd64:10.0.17763.1879", "sha256:1", "2725",
         "application/vnd.oci.image.manifest.v1+json", "-",
         "org.opencontainers.image.title=a\\tb"),  # one line: the tab is written \\t
        ("unknown/unknown", "sha256:2", "465", "-", "attestation of sha256:1",
         "vnd.docker.reference.digest=sha256:1"),
        ("-", "sha256:3", "7", "x", "-", "-"),
    ]
    assert format_rows([image, attestation, bare], "table") == "".join(
        "".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + line[5] + "\n"
        for line in expected
    )
    assert format_rows([], "table") == "PLATFORM   DIGEST    SIZE      MEDIA TYPE   " \
        "ATTESTATION   ANNOTATIONS\n"
    template = parse_format("{{json .Platform}} {{.Attestation}} {{.Platform}}")
    assert not isinstance(template, str)
    assert format_rows([image, bare], template) == (
        '{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1879",'
        '"os.features":["win32k"]} false windows/amd64:10.0.17763.1879\n'
        "null false \n"
    )
