"""Unit tests for manyfest.ops.plan: manifest-tool YAML plans, loaded with BaseLoader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from manyfest.errors import PlanError
from manyfest.ops.plan import PlanEntry, PlanList, PlatformSpec, load, parse_documents
from manyfest.platform import Platform
from manyfest.reference import Reference

DIGEST = "sha256:" + "ab" * 32


def _error(text: str, source: str = "plan") -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_documents(text, source)
    assert info.value.exit_code == 2
    return info.value


def test_scalars_keep_their_text() -> None:
    (plan,) = parse_documents(
        """\
image: example.com/app:1.10
tags: [010, 1.0, 1.10, 1.20, 2e3, true, 0x1F]
manifests:
  - image: example.com/app-386:1.10
    platform:
      architecture: 386
      os: linux
"""
    )
    assert plan.target == Reference("example.com", "app", "1.10", None)
    # 1.10 equals the target's tag and is dropped; every other scalar stays the text written.
    assert plan.extra_tags == ("010", "1.0", "1.20", "2e3", "true", "0x1F")
    assert plan.tags == ["1.10", "010", "1.0", "1.20", "2e3", "true", "0x1F"]
    (entry,) = plan.entries
    assert entry.ref == Reference("example.com", "app-386", "1.10", None)
    assert entry.override == PlatformSpec(architecture="386", os="linux")
    assert entry.override.architecture == "386"
    assert plan.document == 1
    assert plan.annotations == {}


def test_full_document() -> None:
    (plan,) = parse_documents(
        """\
image: registry.example.com/app:1.2.3
tags: ["1.2", "1", "latest"]
annotations: {org.opencontainers.image.version: 1.2.3, n: 010}
manifests:
  - image: registry.example.com/app-amd64:1.2.3
    platform: {os: linux, architecture: amd64}
  - image: registry.example.com/app-arm:1.2.3
    platform: {os: linux, architecture: arm, variant: v7}
  - image: registry.example.com/app-win@"""
        + DIGEST
        + """
    platform:
      os: windows
      architecture: amd64
      os.version: 10.0.17763.1879
      os.features: [win32k]
  - image: registry.example.com/app-s390x:1.2.3
"""
    )
    assert plan == PlanList(
        target=Reference("registry.example.com", "app", "1.2.3", None),
        extra_tags=("1.2", "1", "latest"),
        annotations={"org.opencontainers.image.version": "1.2.3", "n": "010"},
        entries=(
            PlanEntry(
                Reference("registry.example.com", "app-amd64", "1.2.3", None),
                PlatformSpec(os="linux", architecture="amd64"),
            ),
            PlanEntry(
                Reference("registry.example.com", "app-arm", "1.2.3", None),
                PlatformSpec(os="linux", architecture="arm", variant="v7"),
            ),
            PlanEntry(
                Reference("registry.example.com", "app-win", None, DIGEST),
                PlatformSpec(
                    os="windows",
                    architecture="amd64",
                    os_version="10.0.17763.1879",
                    os_features=["win32k"],
                ),
            ),
            PlanEntry(Reference("registry.example.com", "app-s390x", "1.2.3", None), None),
        ),
        document=1,
    )
    assert plan.tags == ["1.2.3", "1.2", "1", "latest"]


def test_multiple_documents_and_empty_ones_skipped() -> None:
    plans = parse_documents(
        """\
---
---
image: a.io/x:1
manifests: [{image: a.io/x-amd64:1}]
---
# only a comment
---
image: a.io/y
manifests: [{image: a.io/y-amd64}]
---
"""
    )
    assert [(str(p.target), p.document) for p in plans] == [
        ("a.io/x:1", 2),
        ("a.io/y:latest", 4),
    ]
    assert plans[1].tags == ["latest"]
    assert [str(e.ref) for p in plans for e in p.entries] == [
        "a.io/x-amd64:1",
        "a.io/y-amd64:latest",
    ]


def test_unknown_key_names_document_and_field() -> None:
    err = _error(
        """\
image: a.io/x:1
manifests: [{image: a.io/x-amd64:1}]
---
image: a.io/y:1
manifests:
  - image: a.io/y-amd64:1
    platfrom: {os: linux}
"""
    )
    assert str(err) == (
        "plan: document 2: manifests[0]: unknown key 'platfrom' (did you mean 'platform'?)"
    )


def test_unknown_platform_key_names_path() -> None:
    err = _error(
        """\
image: a.io/y:1
manifests:
  - image: a.io/y-amd64:1
  - image: a.io/y-arm:1
    platform: {os: linux, arch: arm}
""",
        source="plans/p.yaml",
    )
    assert str(err) == (
        "plans/p.yaml: document 1: manifests[1].platform: unknown key 'arch' (did you mean "
        "'architecture'?)"
    )


def test_unknown_top_level_key() -> None:
    err = _error("image: a.io/y:1\ntag: [x]\nmanifests: [{image: a.io/y-amd64:1}]\n")
    assert str(err) == "plan: document 1: unknown key 'tag' (did you mean 'tags'?)"
    assert err.hint == (
        "the keys of a document are image, manifests, tags, annotations, require_platforms, "
        "platform_check, attestations, allow_duplicate_platforms, media_type, artifact_type, "
        "subject, labels_to_annotations, targets; those of a copy: document are copy, to, "
        "all_tags"
    )


@pytest.mark.parametrize(("text", "message"), [
    ("image: a.io/y:1\nmanifests: [{image: a.io/y-amd64:1}]\nall_tag: true\n",
     "plan: document 1: unknown key 'all_tag' (did you mean 'all_tags', of a copy: document?)"),
    ("coppy: a.io/y:1\nto: [b.io/y]\n",
     "plan: document 1: unknown key 'coppy' (did you mean 'copy', of a copy: document?)"),
])
def test_unknown_key_near_a_copy_key(text: str, message: str) -> None:
    """A plan document's unknown-key error also names the keys of a ``copy:`` document."""
    err = _error(text)
    assert str(err) == message
    assert err.hint.endswith("; those of a copy: document are copy, to, all_tags")


def test_missing_required_fields() -> None:
    assert str(_error("image: a.io/y:1\n")) == (
        "plan: document 1: missing key 'manifests' (a list of mappings with keys image, "
        "platform)"
    )
    assert str(_error("manifests: [{image: a.io/y-amd64:1}]\n")) == (
        "plan: document 1: missing key 'image' (a string)"
    )
    assert str(_error("image: a.io/y:1\nmanifests: [{platform: {os: linux}}]\n")) == (
        "plan: document 1: manifests[0]: missing key 'image' (a string)"
    )


def test_wrong_shapes() -> None:
    assert str(_error("- a\n- b\n")) == (
        "plan: document 1: expected a mapping with image, tags and manifests"
    )
    assert str(_error("image: a.io/y:1\ntags: latest\nmanifests: [{image: a/b}]\n")) == (
        "plan: document 1: tags: expected a list of strings, got 'latest'"
    )
    assert str(_error("image: a.io/y:1\nmanifests: []\n")) == (
        "plan: document 1: manifests: a list needs at least one image"
    )


def test_no_documents() -> None:
    err = _error("---\n---\n# nothing\n")
    assert str(err) == "plan: no list in the plan"
    assert err.hint == "add at least one YAML document"
    assert str(_error("")) == "plan: no list in the plan"


def test_invalid_yaml() -> None:
    err = _error("image: [\n")
    assert str(err).startswith("plan: invalid YAML: ")
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("alias", "key", "value", "expected"),
    [
        ("osversion", "os.version", "10.0.17763", {"os_version": "10.0.17763"}),
        ("osfeatures", "os.features", "[win32k]", {"os_features": ["win32k"]}),
    ],
)
def test_manifest_tool_aliases(
    alias: str, key: str, value: str, expected: dict[str, Any]
) -> None:
    for spelling in (alias, key):
        (plan,) = parse_documents(
            f"image: a.io/y:1\nmanifests:\n  - image: a.io/w:1\n"
            f"    platform: {{os: windows, architecture: amd64, {spelling}: {value}}}\n"
        )
        assert plan.entries[0].override == PlatformSpec(
            os="windows", architecture="amd64", **expected
        )


@pytest.mark.parametrize(
    ("alias", "key"), [("osversion", "os.version"), ("osfeatures", "os.features")]
)
def test_both_spellings_is_an_error(alias: str, key: str) -> None:
    err = _error(
        "image: a.io/y:1\nmanifests:\n  - image: a.io/w:1\n"
        f"    platform: {{os: windows, {alias}: a, {key}: a}}\n"
        "---\n"
    )
    assert str(err) == f"plan: document 1: both {alias!r} and {key!r} given in a platform"


@pytest.mark.parametrize(
    ("value", "features"),
    [
        ("win32k", ["win32k"]),
        ("'win32k, foo ,bar'", ["win32k", "foo", "bar"]),
        ("'a,,b,'", ["a", "b"]),
        ("[win32k, foo]", ["win32k", "foo"]),
    ],
)
@pytest.mark.parametrize("spelling", ["os.features", "osfeatures"])
def test_os_features_comma_string(spelling: str, value: str, features: list[str]) -> None:
    (plan,) = parse_documents(
        f"image: a.io/y:1\nmanifests:\n  - image: a.io/w:1\n"
        f"    platform: {{os: windows, {spelling}: {value}}}\n"
    )
    override = plan.entries[0].override
    assert override is not None
    assert override.os_features == features


def test_invalid_target_reference_names_field() -> None:
    err = _error("image: a.io/Y:1\nmanifests: [{image: a.io/w:1}]\n")
    assert str(err) == (
        "plan: document 1: image: invalid reference format: 'a.io/Y:1': "
        "repository name must be lowercase"
    )


def test_invalid_entry_reference_names_field() -> None:
    err = _error(
        "image: a.io/y:1\nmanifests: [{image: a.io/w:1}]\n---\n"
        "image: a.io/z:1\nmanifests: [{image: a.io/w:1}, {image: 'a.io/w:-bad'}]\n"
    )
    assert str(err) == (
        "plan: document 2: manifests[1].image: invalid reference format: 'a.io/w:-bad': "
        "not a valid reference"
    )


def test_invalid_extra_tag() -> None:
    err = _error("image: a.io/y:1\ntags: [ok, '-bad']\nmanifests: [{image: a.io/w:1}]\n")
    assert str(err) == "plan: document 1: tags: invalid tag '-bad'"


def test_target_with_digest_refused() -> None:
    err = _error(f"image: a.io/y:1@{DIGEST}\nmanifests: [{{image: a.io/w:1}}]\n")
    assert str(err) == (
        f"plan: document 1: image: the target 'a.io/y:1@{DIGEST}' must be a tag, not a digest"
    )


def test_duplicate_and_target_tags_dropped_in_order() -> None:
    (plan,) = parse_documents(
        "image: a.io/y:2\ntags: [latest, '2', x, latest, x, '1', '2']\n"
        "manifests: [{image: a.io/w:1}]\n"
    )
    assert plan.extra_tags == ("latest", "x", "1")
    assert plan.tags == ["2", "latest", "x", "1"]


def test_untagged_target_gets_latest() -> None:
    (plan,) = parse_documents("image: a.io/y\ntags: [latest, v1]\nmanifests: [{image: a/w}]\n")
    assert plan.target.tag == "latest"
    assert plan.tags == ["latest", "v1"]


CONFIG = Platform("linux", "arm", "v7", "5.1", ("f1",))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (None, CONFIG),
        (PlatformSpec(), CONFIG),
        (PlatformSpec(os="windows"), Platform("windows", "arm", "v7", "5.1", ("f1",))),
        (PlatformSpec(architecture="arm64"), Platform("linux", "arm64", "v7", "5.1", ("f1",))),
        (
            PlatformSpec(os="linux", architecture="arm", variant="v6"),
            Platform("linux", "arm", "v6", "5.1", ("f1",)),
        ),
        (PlatformSpec(os_version="9.9"), Platform("linux", "arm", "v7", "9.9", ("f1",))),
        (PlatformSpec(os_features=["a", "b"]), Platform("linux", "arm", "v7", "5.1", ("a", "b"))),
        (
            PlatformSpec(
                os="windows", architecture="amd64", variant="v2", os_version="10", os_features=["x"]
            ),
            Platform("windows", "amd64", "v2", "10", ("x",)),
        ),
    ],
)
def test_entry_platform_merge(override: PlatformSpec | None, expected: Platform) -> None:
    entry = PlanEntry(Reference("a.io", "w", "1", None), override)
    assert entry.platform(CONFIG) == expected


def test_entry_platform_with_empty_config() -> None:
    entry = PlanEntry(
        Reference("a.io", "w", "1", None), PlatformSpec(os="linux", architecture="amd64")
    )
    assert entry.platform(Platform("", "")) == Platform("linux", "amd64")


def test_load_reads_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("image: a.io/y:1\nmanifests: [{image: a.io/w:1}]\n", encoding="utf-8")
    (plan,) = load(path)
    assert str(plan.target) == "a.io/y:1"
    path.write_text("image: a.io/y:1\nmanifests: [{image: a.io/w:1, x: 1}]\n", encoding="utf-8")
    with pytest.raises(PlanError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}: document 1: manifests[0]: unknown key 'x'"
    )


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(PlanError) as info:
        load(path)
    assert str(info.value) == f"cannot read plan {path}: No such file or directory"
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "text",
    [
        "image: a.io/y:1\ntags:\nmanifests: [{image: a.io/w:1}]\n",
        "image: a.io/y:1\nannotations:\nmanifests: [{image: a.io/w:1}]\n",
        "image: a.io/y:1\nmanifests:\n  - image: a.io/w:1\n    platform:\n",
        "image: a.io/y:1\nmanifests:\n  - image: a.io/w:1\n    platform: ~\n",
    ],
)
def test_blank_optional_keys_mean_absent(text: str) -> None:
    # manifest-tool (Go yaml) reads `tags:` / `platform:` with no value as null = not given.
    (plan,) = parse_documents(text)
    assert plan.extra_tags == ()
    assert plan.annotations == {}
    assert plan.entries == (PlanEntry(Reference("a.io", "w", "1", None), None),)
