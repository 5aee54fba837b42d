"""Unit tests for the compact (matrix) plan documents and manifest-tool's from-args lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyfest.errors import PlanError
from manyfest.ops.plan import (
    PlanEntry,
    PlanList,
    PlatformSpec,
    from_args,
    load,
    parse_documents,
)
from manyfest.platform import Platform
from manyfest.reference import Reference

REG = "registry.example.com"

BRIEF_EXAMPLE = f"""\
matrix:
  version: ["1.0.0", "1.1.0", "2.0.0"]
  flavor: ["", "-alpine"]
image: {REG}/app:{{version}}{{flavor}}
tags: ["{{version}}{{flavor}}-stable"]
annotations: {{org.opencontainers.image.version: "{{version}}"}}
platforms: [linux/amd64, linux/arm64/v8, linux/arm/v7]
template: {REG}/app-{{os}}-{{arch}}{{variant}}:{{version}}{{flavor}}
"""


def _error(text: str, source: str = "plan") -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_documents(text, source)
    assert info.value.exit_code == 2
    return info.value


def _override(platform: str) -> PlatformSpec:
    parts = platform.split("/")
    return PlatformSpec(
        os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else ""
    )


# --- compact documents: expansion -------------------------------------------------------


def test_brief_example_expands_in_matrix_order() -> None:
    plans = parse_documents(BRIEF_EXAMPLE)
    combos = [
        ("1.0.0", ""),
        ("1.0.0", "-alpine"),
        ("1.1.0", ""),
        ("1.1.0", "-alpine"),
        ("2.0.0", ""),
        ("2.0.0", "-alpine"),
    ]
    assert [str(p.target) for p in plans] == [f"{REG}/app:{v}{f}" for v, f in combos]
    expected = []
    for version, flavor in combos:
        tag = f"{version}{flavor}"
        expected.append(
            PlanList(
                target=Reference(REG, "app", tag, None),
                extra_tags=(f"{tag}-stable",),
                annotations={"org.opencontainers.image.version": version},
                entries=(
                    PlanEntry(
                        Reference(REG, "app-linux-amd64", tag, None),
                        PlatformSpec(os="linux", architecture="amd64"),
                    ),
                    PlanEntry(
                        Reference(REG, "app-linux-arm64v8", tag, None),
                        PlatformSpec(os="linux", architecture="arm64", variant="v8"),
                    ),
                    PlanEntry(
                        Reference(REG, "app-linux-armv7", tag, None),
                        PlatformSpec(os="linux", architecture="arm", variant="v7"),
                    ),
                ),
                document=1,
            )
        )
    assert plans == expected
    assert plans[1].tags == ["1.0.0-alpine", "1.0.0-alpine-stable"]


def test_matrix_values_keep_their_text() -> None:
    plans = parse_documents(
        "matrix: {v: [1.10, 010, 1.0, 0x1F, true]}\n"
        "image: a.io/x:{v}\n"
        "platforms: [linux/386]\n"
        "template: a.io/x-{arch}:{v}\n"
    )
    assert [p.target.tag for p in plans] == ["1.10", "010", "1.0", "0x1F", "true"]
    assert [str(p.entries[0].ref) for p in plans] == [
        "a.io/x-386:1.10",
        "a.io/x-386:010",
        "a.io/x-386:1.0",
        "a.io/x-386:0x1F",
        "a.io/x-386:true",
    ]
    assert plans[0].entries[0].override == PlatformSpec(os="linux", architecture="386")


def test_three_keys_product_order() -> None:
    plans = parse_documents(
        "matrix:\n  a: [x, y]\n  b: ['1', '2']\n  c: [p, q]\n"
        "image: a.io/r:{a}{b}{c}\nplatforms: [linux/amd64]\ntemplate: a.io/r-{arch}:{a}{b}{c}\n"
    )
    assert [p.target.tag for p in plans] == [
        "x1p",
        "x1q",
        "x2p",
        "x2q",
        "y1p",
        "y1q",
        "y2p",
        "y2q",
    ]


def test_mixed_documents_in_file_order() -> None:
    plans = parse_documents(
        """\
image: a.io/one:1
manifests: [{image: a.io/one-amd64:1}]
---
matrix: {v: ['1', '2']}
image: a.io/two:{v}
tags: ['v{v}']
platforms: [linux/amd64, windows/amd64]
template: a.io/two-{os}-{arch}{variant}:OS-{v}
---
# empty
---
image: a.io/three:1
tags: [x]
manifests: [{image: a.io/three-amd64:1, platform: {os: linux}}]
"""
    )
    assert [(str(p.target), p.extra_tags, p.document) for p in plans] == [
        ("a.io/one:1", (), 1),
        ("a.io/two:1", ("v1",), 2),
        ("a.io/two:2", ("v2",), 2),
        ("a.io/three:1", ("x",), 4),
    ]
    # `OS` (manifest-tool's placeholder) means nothing in a compact template: only {os} does
    assert [str(e.ref) for e in plans[1].entries] == [
        "a.io/two-linux-amd64:OS-1",
        "a.io/two-windows-amd64:OS-1",
    ]
    assert [e.override for e in plans[2].entries] == [
        PlatformSpec(os="linux", architecture="amd64"),
        PlatformSpec(os="windows", architecture="amd64"),
    ]
    assert plans[0].entries == (PlanEntry(Reference("a.io", "one-amd64", "1", None), None),)
    assert plans[3].entries[0].override == PlatformSpec(os="linux")


def test_manifests_form_templated() -> None:
    plans = parse_documents(
        """\
matrix:
  version: ['1.10', '2.0']
  os: [linux, windows]
image: a.io/app:{version}-{os}
annotations: {v: "{version}", literal: "{{version}}"}
manifests:
  - image: a.io/app-{os}-amd64:{version}
    platform: {os: "{os}", architecture: amd64, osversion: "{version}.1", osfeatures: "f{os}, g"}
  - image: a.io/app-{os}-arm64:{version}
  - image: a.io/app-{os}-arm:{version}
    platform: {variant: "v{version}"}
"""
    )
    assert [str(p.target) for p in plans] == [
        "a.io/app:1.10-linux",
        "a.io/app:1.10-windows",
        "a.io/app:2.0-linux",
        "a.io/app:2.0-windows",
    ]
    assert plans[1] == PlanList(
        target=Reference("a.io", "app", "1.10-windows", None),
        extra_tags=(),
        annotations={"v": "1.10", "literal": "{version}"},
        entries=(
            PlanEntry(
                Reference("a.io", "app-windows-amd64", "1.10", None),
                PlatformSpec(
                    os="windows",
                    architecture="amd64",
                    os_version="1.10.1",
                    os_features=["fwindows", "g"],
                ),
            ),
            PlanEntry(Reference("a.io", "app-windows-arm64", "1.10", None), None),
            PlanEntry(
                Reference("a.io", "app-windows-arm", "1.10", None),
                PlatformSpec(variant="v1.10"),
            ),
        ),
        document=1,
    )


def test_empty_matrix_is_one_list() -> None:
    (plan,) = parse_documents(
        "matrix: {}\nimage: a.io/x:1\nplatforms: [linux/amd64, linux/arm/v6]\n"
        "template: a.io/x-{arch}{variant}:1\n"
    )
    assert str(plan.target) == "a.io/x:1"
    assert [str(e.ref) for e in plan.entries] == ["a.io/x-amd64:1", "a.io/x-armv6:1"]


def test_expanded_tags_deduplicated_and_target_dropped() -> None:
    (plan,) = parse_documents(
        "matrix: {v: ['3']}\nimage: a.io/x:{v}\ntags: ['{v}', latest, 'v{v}', latest]\n"
        "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{v}\n"
    )
    assert plan.tags == ["3", "latest", "v3"]


def test_entries_platform_follows_manifest_tool_from_args() -> None:
    """The override sets os/arch/variant; an empty variant comes from the image config."""
    (plan,) = parse_documents(
        "matrix: {}\nimage: a.io/x:1\nplatforms: [linux/arm64, linux/arm/v6]\n"
        "template: a.io/x-{arch}{variant}:1\n"
    )
    config = Platform("linux", "arm64", "v8", "", ())
    assert plan.entries[0].platform(config) == Platform("linux", "arm64", "v8")
    assert plan.entries[1].platform(Platform("linux", "arm", "v7")) == Platform(
        "linux", "arm", "v6"
    )


def test_load_compact_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BRIEF_EXAMPLE, encoding="utf-8")
    plans = load(path)
    assert len(plans) == 6
    path.write_text(
        BRIEF_EXAMPLE.replace("}:{version}{flavor}", "}:{version}{flavour}"), encoding="utf-8"
    )
    with pytest.raises(PlanError) as info:
        load(path)
    assert str(info.value) == f"{path}: document 1: template: unknown placeholder {{flavour}}"


# --- compact documents: errors ----------------------------------------------------------

OK_DOC = "image: a.io/ok:1\nmanifests: [{image: a.io/ok-amd64:1}]\n"


def _compact(body: str, before: int = 2) -> str:
    """A plan whose document ``before + 1`` is the compact document ``body``."""
    docs = [OK_DOC.replace("ok:1", f"ok:{i}") for i in range(before)]
    return "---\n".join([*docs, body])


def test_unknown_placeholder_in_template_names_document() -> None:
    err = _error(
        _compact(
            "matrix: {version: ['1'], flavor: ['']}\nimage: a.io/x:{version}{flavor}\n"
            "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{version}{flavour}\n"
        )
    )
    assert str(err) == "plan: document 3: template: unknown placeholder {flavour}"
    assert err.hint == (
        "placeholders defined for template: {version}, {flavor}, {os}, {arch}, {variant}"
    )
    assert err.one_line() == (
        "plan: document 3: template: unknown placeholder {flavour}; placeholders defined "
        "for template: {version}, {flavor}, {os}, {arch}, {variant}"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image": "a.io/x:{arch}"}, "image: unknown placeholder {arch}"),
        ({"tags": "[ok, 'x{v}', '{w}']"}, "tags[2]: unknown placeholder {w}"),
        ({"annotations": "{a.b: '{v}', c: '{os}'}"}, "annotations['c']: unknown placeholder {os}"),
        ({"template": "a.io/x-{arch}:{V}"}, "template: unknown placeholder {V}"),
        ({"template": "a.io/x-{}:{v}"}, "template: positional placeholder {}"),
        ({"template": "a.io/x-{0}:{v}"}, "template: positional placeholder {0}"),
        (
            {"template": "a.io/x-{arch.upper}:{v}"},
            "template: placeholder {arch.upper}: attribute and index access are not supported",
        ),
        (
            {"image": "a.io/x:{v[0]}"},
            "image: placeholder {v[0]}: attribute and index access are not supported",
        ),
        (
            {"image": "a.io/x:{v"},
            "image: invalid template 'a.io/x:{v': expected '}' before end of string",
        ),
        (
            {"image": "a.io/x:v}"},
            "image: invalid template 'a.io/x:v}': Single '}' encountered in format string",
        ),
        ({"image": "a.io/x:{v:{w}}"}, "image: unknown placeholder {w}"),
    ],
)
def test_placeholder_errors(changes: dict[str, str], message: str) -> None:
    fields = {
        "matrix": "{v: ['1']}",
        "image": "a.io/x:{v}",
        "platforms": "[linux/amd64]",
        "template": "a.io/x-{arch}:{v}",
        **changes,
    }
    body = "".join(
        f"{k}: {v}\n" if k in ("matrix", "platforms", "tags", "annotations") else f"{k}: '{v}'\n"
        for k, v in fields.items()
    )
    err = _error(_compact(body, before=1))
    assert str(err) == f"plan: document 2: {message}"


def test_unknown_placeholder_in_manifests_form() -> None:
    # {os} is not defined in the manifests form (only matrix keys are)
    err = _error(
        "matrix: {v: ['1']}\nimage: a.io/x:{v}\nmanifests:\n"
        "  - image: a.io/x-amd64:{v}\n  - image: a.io/x-{os}:{v}\n"
    )
    assert str(err) == "plan: document 1: manifests[1].image: unknown placeholder {os}"
    assert err.hint == "placeholders defined for manifests[1].image: {v}"
    err = _error(
        "matrix: {v: ['1']}\nimage: a.io/x:{v}\nmanifests:\n"
        "  - image: a.io/x-amd64:{v}\n    platform: {os: linux, os.features: [a, '{f}']}\n"
    )
    assert str(err) == (
        "plan: document 1: manifests[0].platform.os.features[1]: unknown placeholder {f}"
    )


def test_format_spec_error_names_combination() -> None:
    err = _error(
        "matrix: {v: ['1', '2'], w: [a]}\nimage: 'a.io/x:{v:d}'\n"
        "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{v}\n"
    )
    assert str(err) == (
        "plan: document 1 (v='1', w='a'): image: Unknown format code 'd' for object of type 'str'"
    )


def test_format_spec_applies() -> None:
    (plan,) = parse_documents(
        "matrix: {v: ['1.2.3']}\nimage: 'a.io/x:{v:.3}'\n"
        "platforms: [linux/amd64]\ntemplate: 'a.io/x-{arch}:{v:_>7}'\n"
    )
    assert plan.target.tag == "1.2"
    # '   1.2.3' is not a tag: the expanded reference is checked
    err = _error(
        "matrix: {v: ['1.2.3']}\nimage: 'a.io/x:{v}'\n"
        "platforms: [linux/amd64]\ntemplate: 'a.io/x-{arch}:{v:>6}'\n"
    )
    assert str(err) == (
        "plan: document 1 (v='1.2.3'): template: linux/amd64: invalid reference format: "
        "'a.io/x-amd64: 1.2.3': not a valid reference"
    )


def test_expanded_references_and_tags_are_validated() -> None:
    head = "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:1\n"
    assert str(_error(f"matrix: {{v: [ok, Up]}}\nimage: a.io/{{v}}:1\n{head}")) == (
        "plan: document 1 (v='Up'): image: invalid reference format: 'a.io/Up:1': "
        "repository name must be lowercase"
    )
    assert str(_error(f"matrix: {{v: ['1', '-x']}}\nimage: a.io/x:1\ntags: ['{{v}}']\n{head}")) == (
        "plan: document 1 (v='-x'): tags: invalid tag '-x'"
    )
    assert str(
        _error(
            "matrix: {v: ['1', '2']}\nimage: a.io/x:{v}\nmanifests:\n"
            "  - image: a.io/x-amd64:{v}\n  - image: 'a.io/x-arm:{v}@sha256:12'\n"
        )
    ) == (
        "plan: document 1 (v='1'): manifests[1].image: invalid reference format: "
        "'a.io/x-arm:1@sha256:12': not a valid reference"
    )
    assert str(
        _error(
            "matrix: {v: ['1', 'X']}\nimage: a.io/x:{v}\nplatforms: [linux/amd64]\n"
            "template: a.io/x-{arch}{v}:1\n"
        )
    ) == (
        "plan: document 1 (v='X'): template: linux/amd64: invalid reference format: "
        "'a.io/x-amd64X:1': repository name must be lowercase"
    )


def test_unknown_and_missing_keys() -> None:
    assert (
        str(
            _error(
                _compact(
                    "matrix: {v: ['1']}\nimage: a.io/x:{v}\nplatforms: [linux/amd64]\n"
                    "templates: a.io/x-{arch}:{v}\n",
                    before=1,
                )
            )
        )
        == "plan: document 2: unknown key 'templates' (did you mean 'template'?)"
    )
    assert (
        str(_error("matrix: {v: ['1']}\nplatforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{v}\n"))
        == "plan: document 1: missing key 'image' (a string)"
    )
    # `matrix:` with no value is a compact document whose matrix is missing
    assert (
        str(_error("matrix:\nimage: a.io/x:1\nplatforms: [linux/amd64]\ntemplate: a.io/x:1\n"))
        == "plan: document 1: missing key 'matrix' (a mapping of strings to lists of strings)"
    )
    assert str(
        _error(
            "matrix: {v: ['1']}\nimage: a.io/x:{v}\nmanifests:\n"
            "  - image: a.io/x-amd64:{v}\n    platform: {arch: amd64}\n"
        )
    ) == ("plan: document 1: manifests[0].platform: unknown key 'arch' (did you mean "
          "'architecture'?)")


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ("v: '1'", "matrix: v: expected a list of strings"),
        ("v: [[1]]", "matrix: v: expected a list of strings"),
        ("v: [~]", "matrix: v: expected a list of strings"),
        ("v: {a: b}", "matrix: v: expected a list of strings"),
        ("v: []", "matrix: v: no values"),
        ("v: ~", "matrix: v: no values"),
        ("v: ", "matrix: v: no values"),
        ("~: [a]", "matrix: expected string keys, got null"),
        ("v: ['1', '2', '1']", "matrix: v: value '1' given twice"),
        ("1v: ['1']", "matrix: invalid key '1v'"),
        ("a.b: ['1']", "matrix: invalid key 'a.b'"),
        ("arch: [amd64]", "matrix: key 'arch' is the {arch} platform placeholder"),
    ],
)
def test_matrix_errors(matrix: str, message: str) -> None:
    err = _error(
        _compact(
            f"matrix: {{{matrix}}}\nimage: a.io/x:1\nplatforms: [linux/amd64]\n"
            "template: a.io/x-{arch}:1\n",
            before=1,
        )
    )
    assert str(err) == f"plan: document 2: {message}"


def test_matrix_key_with_dash_and_underscore() -> None:
    plans = parse_documents(
        "matrix: {my-ver: ['1'], _b: ['2']}\nimage: a.io/x:{my-ver}.{_b}\n"
        "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{my-ver}\n"
    )
    assert [str(p.target) for p in plans] == ["a.io/x:1.2"]


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        (
            "platforms: [linux/amd64]\n",
            "a matrix document needs platforms and template, or manifests",
        ),
        ("template: a.io/x:1\n", "a matrix document needs platforms and template, or manifests"),
        ("", "a matrix document needs platforms and template, or manifests"),
        (
            "platforms: [linux/amd64]\ntemplate: a.io/x:1\nmanifests: [{image: a.io/x:1}]\n",
            "give platforms and template, or manifests, not both",
        ),
        (
            "manifests: [{image: a.io/y:1}]\ntemplate: a.io/x:1\n",
            "give platforms and template, or manifests, not both",
        ),
        ("platforms: []\ntemplate: a.io/x:1\n", "platforms: a list needs at least one platform"),
        ("manifests: []\n", "(v='1'): manifests: a list needs at least one image"),
        (
            "platforms: [linux/amd64, linux]\ntemplate: a.io/x-{arch}:1\n",
            "platforms[1]: invalid platform 'linux': expected os/arch[/variant]",
        ),
        (
            "platforms: [linux/arm/v7/x]\ntemplate: a.io/x-{arch}:1\n",
            "platforms[0]: invalid platform 'linux/arm/v7/x': expected os/arch[/variant]",
        ),
        (
            "platforms: [linux/]\ntemplate: a.io/x-{arch}:1\n",
            "platforms[0]: invalid platform 'linux/': expected os/arch[/variant]",
        ),
        (
            "platforms: ['linux/ amd64']\ntemplate: a.io/x-{arch}:1\n",
            "platforms[0]: invalid platform 'linux/ amd64': expected os/arch[/variant]",
        ),
    ],
)
def test_form_errors(rest: str, message: str) -> None:
    err = _error(_compact(f"matrix: {{v: ['1']}}\nimage: a.io/x:1\n{rest}", before=1))
    # errors of the document name it; errors of an expanded list name its combination too
    separator = " " if message.startswith("(") else ": "
    assert str(err) == f"plan: document 2{separator}{message}"


def test_os_matrix_key_allowed_with_manifests() -> None:
    plans = parse_documents(
        "matrix: {os: [linux]}\nimage: a.io/x:{os}\nmanifests: [{image: 'a.io/x-{os}:1'}]\n"
    )
    assert str(plans[0].entries[0].ref) == "a.io/x-linux:1"


def test_two_platforms_one_source() -> None:
    err = _error(
        "matrix: {v: ['1']}\nimage: a.io/x:{v}\n"
        "platforms: [linux/amd64, linux/arm/v6, linux/arm/v7]\ntemplate: a.io/x-{arch}:{v}\n"
    )
    assert str(err) == (
        "plan: document 1 (v='1'): template: linux/arm/v6 and linux/arm/v7 both give 'a.io/x-arm:1'"
    )
    assert err.hint == (
        "each platform needs its own source; use {os}, {arch} and {variant} in the template"
    )


# --- duplicate tags across the plan ------------------------------------------------------


def test_duplicate_target_across_documents() -> None:
    err = _error(
        "image: a.io/app:2.0.0\nmanifests: [{image: a.io/w:1}]\n---\n"
        + BRIEF_EXAMPLE.replace(REG, "a.io")
    )
    assert str(err) == (
        "plan: document 2 (version='2.0.0', flavor=''): image: a.io/app:2.0.0 is also the "
        "target of document 1"
    )
    assert err.hint == "each tag can be written by one list only"


def test_duplicate_target_between_manifest_tool_documents() -> None:
    err = _error(
        "image: a.io/x:1\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: a.io/y:1\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: docker.io/a.io/x:1\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: a.io/x:1\nmanifests: [{image: a.io/w:2}]\n"
    )
    assert str(err) == "plan: document 4: image: a.io/x:1 is also the target of document 1"
    # docker.io normalisation: `app` and `docker.io/library/app:latest` are one target
    err = _error(
        "image: app\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: docker.io/library/app:latest\nmanifests: [{image: a.io/w:1}]\n"
    )
    assert str(err) == (
        "plan: document 2: image: docker.io/library/app:latest is also the target of document 1"
    )


def test_duplicate_target_within_a_matrix() -> None:
    err = _error(
        "matrix: {v: ['1', '2']}\nimage: a.io/x:latest\nplatforms: [linux/amd64]\n"
        "template: a.io/x-{arch}:{v}\n"
    )
    assert str(err) == (
        "plan: document 1 (v='2'): image: a.io/x:latest is also the target of document 1 (v='1')"
    )


def test_alias_tags_written_twice() -> None:
    err = _error(
        "matrix: {v: ['1', '2']}\nimage: a.io/x:{v}\ntags: [latest]\n"
        "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{v}\n"
    )
    assert (
        str(err)
        == "plan: document 1 (v='2'): tags: a.io/x:latest is also a tag of document 1 (v='1')"
    )
    err = _error(
        "image: a.io/x:1\ntags: ['2']\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: a.io/x:2\nmanifests: [{image: a.io/w:1}]\n"
    )
    assert str(err) == "plan: document 2: image: a.io/x:2 is also a tag of document 1"
    err = _error(
        "image: a.io/x:2\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: a.io/x:1\ntags: ['2']\nmanifests: [{image: a.io/w:1}]\n"
    )
    assert str(err) == "plan: document 2: tags: a.io/x:2 is also the target of document 1"


def test_same_tag_in_other_repositories_is_fine() -> None:
    plans = parse_documents(
        "matrix: {r: [a, b]}\nimage: a.io/{r}:1\ntags: [latest]\n"
        "platforms: [linux/amd64]\ntemplate: a.io/{r}-{arch}:1\n---\n"
        "image: b.io/a:1\ntags: [latest]\nmanifests: [{image: a.io/w:1}]\n"
    )
    assert [p.tags for p in plans] == [["1", "latest"]] * 3


# --- from-args (manifest-tool push from-args) --------------------------------------------


def test_from_args_basic() -> None:
    plans = from_args(
        ["linux/amd64,linux/arm64/v8", "linux/arm/v7"],
        "reg.io/app-OS-ARCHVARIANT:1.0",
        "reg.io/app:1.0",
        ["1,latest", "stable"],
        ["org.opencontainers.image.version=1.0", "a=b"],
    )
    assert plans == [
        PlanList(
            target=Reference("reg.io", "app", "1.0", None),
            extra_tags=("1", "latest", "stable"),
            annotations={"org.opencontainers.image.version": "1.0", "a": "b"},
            entries=(
                PlanEntry(
                    Reference("reg.io", "app-linux-amd64", "1.0", None),
                    PlatformSpec(os="linux", architecture="amd64"),
                ),
                PlanEntry(
                    Reference("reg.io", "app-linux-arm64v8", "1.0", None),
                    PlatformSpec(os="linux", architecture="arm64", variant="v8"),
                ),
                PlanEntry(
                    Reference("reg.io", "app-linux-armv7", "1.0", None),
                    PlatformSpec(os="linux", architecture="arm", variant="v7"),
                ),
            ),
            document=1,
        )
    ]


def test_from_args_first_occurrence_only() -> None:
    (plan,) = from_args(
        ["linux/amd64", "windows/arm64/v8"],
        "reg.io/OS/app-ARCHVARIANT:ARCH-OS-VARIANT",
        "reg.io/app:1",
    )
    assert [str(e.ref) for e in plan.entries] == [
        "reg.io/linux/app-amd64:ARCH-OS-VARIANT",
        "reg.io/windows/app-arm64v8:ARCH-OS-VARIANT",
    ]


def test_from_args_replaces_arch_then_os_then_variant() -> None:
    # manifest-tool: Replace(Replace(Replace(t, "ARCH", arch, 1), "OS", os, 1), "VARIANT", v, 1)
    # so only the first of each is replaced, ARCH first: an "OS" elsewhere in the name (here
    # in the repository "cOSt") is the one replaced: manifest-tool's known hazard, kept.
    (plan,) = from_args(["linux/arm/v7"], "reg.io/cOSt/app-ARCH:OS-VARIANT-VARIANT",
                        "reg.io/app:1")
    assert str(plan.entries[0].ref) == "reg.io/clinuxt/app-arm:OS-v7-VARIANT"
    assert plan.entries[0].override == PlatformSpec(os="linux", architecture="arm", variant="v7")
    (plan,) = from_args(["linux/amd64"], "reg.io/app:ARCH-ARCH", "reg.io/app:1")
    assert str(plan.entries[0].ref) == "reg.io/app:amd64-ARCH"


def test_from_args_platforms_are_checked() -> None:
    with pytest.raises(PlanError, match="unsupported os/arch combination: linux/xOS"):
        from_args(["linux/xOS/yVARIANT"], "reg.io/app:ARCH-OS-VARIANT", "reg.io/app:1")


def test_from_args_variant_empty_and_no_placeholder_needed_for_one_platform() -> None:
    (plan,) = from_args(["linux/amd64"], "reg.io/app-ARCHVARIANT", "reg.io/app")
    assert plan.entries == (
        PlanEntry(
            Reference("reg.io", "app-amd64", "latest", None),
            PlatformSpec(os="linux", architecture="amd64"),
        ),
    )
    assert plan.tags == ["latest"]
    (plan,) = from_args(["linux/amd64"], "reg.io/app-amd64:1", "reg.io/app:1")
    assert str(plan.entries[0].ref) == "reg.io/app-amd64:1"
    # the override's empty variant comes from the image config, as in manifest-tool
    assert plan.entries[0].platform(Platform("linux", "amd64", "v2")) == Platform(
        "linux", "amd64", "v2"
    )


def test_from_args_lists_trimmed_blank_items_dropped_tags_deduplicated() -> None:
    (plan,) = from_args(
        [" linux/amd64 , ", ",linux/arm64"],
        "reg.io/app-ARCH:2",
        "reg.io/app:2",
        tags=["latest, 2,", "", "latest", "x"],
        annotations=["k=v", "k=w", "e="],
    )
    assert [str(e.ref) for e in plan.entries] == ["reg.io/app-amd64:2", "reg.io/app-arm64:2"]
    assert plan.tags == ["2", "latest", "x"]
    # a key given twice keeps its last value (manifest-tool fills a Go map); empty values ok
    assert plan.annotations == {"k": "w", "e": ""}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"platforms": []}, "--platforms: no platform given"),
        ({"platforms": [" , "]}, "--platforms: no platform given"),
        (
            {"platforms": ["linux/amd64,linux"]},
            "--platforms: invalid platform 'linux': expected os/arch[/variant]",
        ),
        (
            {"platforms": ["linux/arm/v7/x"]},
            "--platforms: invalid platform 'linux/arm/v7/x': expected os/arch[/variant]",
        ),
        (
            {"platforms": ["/amd64"]},
            "--platforms: invalid platform '/amd64': expected os/arch[/variant]",
        ),
        (
            {"target": "reg.io/App:1"},
            "--target: invalid reference format: 'reg.io/App:1': repository name must be lowercase",
        ),
        (
            {"target": "reg.io/app@sha256:" + "a" * 64},
            f"--target: the target 'reg.io/app@sha256:{'a' * 64}' must be a tag, not a digest",
        ),
        ({"tags": ["ok,-bad"]}, "--tags: invalid tag '-bad'"),
        ({"annotations": ["k"]}, "--annotations: 'k' is not key=value"),
        ({"annotations": ["a=b=c"]}, "--annotations: 'a=b=c' is not key=value"),
        ({"annotations": ["=v"]}, "--annotations: '=v' has an empty key"),
        (
            {"template": "reg.io/App-ARCH:1"},
            "--template: linux/amd64: invalid reference format: 'reg.io/App-amd64:1': "
            "repository name must be lowercase",
        ),
        (
            {"template": "reg.io/app-arch:1"},
            "--template: linux/amd64 and linux/arm/v7 both give 'reg.io/app-arch:1'",
        ),
        (
            {"platforms": ["linux/amd64,linux/amd64"]},
            "--template: linux/amd64 and linux/amd64 both give 'reg.io/app-amd64:1'",
        ),
    ],
)
def test_from_args_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "platforms": ["linux/amd64,linux/arm/v7"],
        "template": "reg.io/app-ARCH:1",
        "target": "reg.io/app:1",
        **kwargs,
    }
    with pytest.raises(PlanError) as info:
        from_args(**args)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert info.value.exit_code == 2
    assert "check --platforms" in info.value.hint or "ARCH, OS and VARIANT" in info.value.hint
