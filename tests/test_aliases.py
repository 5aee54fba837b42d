"""Floating release aliases: version parsing and ordering (manyfest.ops.aliases), the
``aliases:`` key of compact plan documents (manyfest.ops.plan), the worked example of
docs/plan.md, and one ``publish --dry-run`` through the CLI against the real registry.

Only the end-to-end test is slow-marked; the rest is pure and fast.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manyfest.errors import PlanError
from manyfest.ops.aliases import (
    DEFAULT_ALIASES,
    Candidate,
    Version,
    assign,
    latest_name,
    parse_version,
)
from manyfest.ops.plan import PlanList, parse_documents
from manyfest.platform import Platform
from tests.helpers import REPO_ROOT, manyfest, seed_built
from tests.registry_server import RegistryServer

HOST = "registry.example.com"


def _v(text: str) -> Version:
    version = parse_version(text)
    assert version is not None, text
    return version


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(("text", "fields"), [
    ("1", ("1", "", "", "", "")),
    ("1.2", ("1", "2", "", "", "")),
    ("1.2.3", ("1", "2", "3", "", "")),
    ("v1.2.3", ("1", "2", "3", "", "")),
    ("24.04", ("24", "04", "", "", "")),
    ("1.2.3-rc1", ("1", "2", "3", "-rc1", "")),
    ("1.2.3-beta.2", ("1", "2", "3", "-beta.2", "")),
    ("1.2.3-alpha", ("1", "2", "3", "-alpha", "")),
    ("1.0-RC1", ("1", "0", "", "-RC1", "")),
    ("3.13.0a1", ("3", "13", "0", "a1", "")),
    ("3.13.0b2", ("3", "13", "0", "b2", "")),
    ("3.13.0rc2", ("3", "13", "0", "rc2", "")),
    ("1.0.dev0", ("1", "0", "", ".dev0", "")),
    ("3.12.1-slim", ("3", "12", "1", "", "-slim")),
    ("3.12.1-slim-bookworm", ("3", "12", "1", "", "-slim-bookworm")),
    ("1.2.3-alpine", ("1", "2", "3", "", "-alpine")),  # not the pre-release "a"
    ("1.2.3-devel", ("1", "2", "3", "", "-devel")),  # not the pre-release "dev"
    ("3.14.0-rc1-slim", ("3", "14", "0", "-rc1", "-slim")),
    ("v2-windowsservercore-ltsc2022", ("2", "", "", "", "-windowsservercore-ltsc2022")),
    # Python's short pre-releases after a separator, and the word "prerelease"
    ("1.2.3-a1", ("1", "2", "3", "-a1", "")),
    ("1.2.3-b1", ("1", "2", "3", "-b1", "")),
    ("1.2.3-c1", ("1", "2", "3", "-c1", "")),
    ("1.2.3.b2", ("1", "2", "3", ".b2", "")),
    ("1.2.3-prerelease", ("1", "2", "3", "-prerelease", "")),
    ("1.2.3-prerelease2-slim", ("1", "2", "3", "-prerelease2", "-slim")),
    # a pre-release part later in the suffix is the pre-release, not part of the variant
    ("1.2.3-slim-rc1", ("1", "2", "3", "-rc1", "-slim")),
    ("1.2.3-slim-beta.2", ("1", "2", "3", "-beta.2", "-slim")),
    ("1.2.3-slim-b1-bookworm", ("1", "2", "3", "-b1", "-slim-bookworm")),
    ("1.2.3-slim-dev", ("1", "2", "3", "-dev", "-slim")),
    ("1.2.3-slim-devel", ("1", "2", "3", "", "-slim-devel")),
    ("1.2.3-b1a", ("1", "2", "3", "", "-b1a")),
])
def test_parse_version(text: str, fields: tuple[str, ...]) -> None:
    v = _v(text)
    assert (v.major, v.minor, v.patch, v.pre, v.suffix) == fields
    assert v.text == text
    assert v.release is (fields[3] == "")


@pytest.mark.parametrize("text", [
    "", "latest", "stable", "x1.2", "1.", "1.2.", ".1", "1.2.3.4", "1..2", "1.2-1",
    "1.2.3-", "1.2.3-beta-2", "1.2.3_slim", "1.2.3 ", "V", "1.2.3+build5",
    # two pre-releases, or a number after a pre-release word and a '-', in the suffix
    "1.2.3-rc1-slim-rc2", "1.2.3-slim-rc1-beta2", "1.2.3-slim-rc-1", "1.2.3a1-slim-b2",
])
def test_not_a_version(text: str) -> None:
    assert parse_version(text) is None


def test_placeholders_drop_the_v_and_keep_the_written_digits() -> None:
    assert _v("v1.2.3").placeholders() == {"major": "1", "minor": "2", "patch": "3"}
    assert _v("24.04").placeholders() == {"major": "24", "minor": "04"}
    assert _v("24.04").missing() == ("patch",)
    assert _v("7").missing() == ("minor", "patch")


def test_order_is_numeric_and_pre_releases_come_before_their_release() -> None:
    texts = ["1.10.0", "1.9.0", "1.2.3", "1.2.3-rc1", "1.2.3-rc.2", "1.2.3-beta.2",
             "1.2.3-alpha", "1.2.3.dev1", "1.2.10", "2", "1.2.4a1", "1.11"]
    ordered = sorted(texts, key=lambda t: _v(t).key)
    assert ordered == ["1.2.3.dev1", "1.2.3-alpha", "1.2.3-beta.2", "1.2.3-rc1",
                       "1.2.3-rc.2", "1.2.3", "1.2.4a1", "1.2.10", "1.9.0", "1.10.0",
                       "1.11", "2"]
    assert _v("1.2").key == _v("1.2.0").key == _v("v1.2.0").key
    # where the pre-release is written does not matter: one version, one suffix
    assert (_v("1.2.3-slim-rc1").key, _v("1.2.3-slim-rc1").suffix) == (
        _v("1.2.3-rc1-slim").key, _v("1.2.3-rc1-slim").suffix)
    assert _v("1.2.3-a1").key < _v("1.2.3-b1").key < _v("1.2.3-prerelease").key \
        == _v("1.2.3-rc").key < _v("1.2.3").key


@pytest.mark.parametrize(("suffix", "name"), [
    ("", "latest"), ("-slim", "slim"), ("-slim-bookworm", "slim-bookworm"),
    ("_alpine", "alpine"), ("-", "latest"),
])
def test_latest_name(suffix: str, name: str) -> None:
    assert latest_name(suffix) == name


# ------------------------------------------------------------------ assignment


def _render(version: Version, suffix: str) -> tuple[str | None, ...]:
    """The default aliases of a version, as the plan renders them."""
    minor = f"{version.major}.{version.minor}{suffix}" if version.minor else None
    return minor, f"{version.major}{suffix}", latest_name(suffix)


def _candidates(texts: list[str], suffixes: tuple[str, ...] = ("",)) -> list[Candidate]:
    return [Candidate(suffix, _v(t), _render(_v(t), suffix + _v(t).suffix))
            for t in texts for suffix in suffixes]


def test_assign_gives_each_alias_to_the_highest_of_its_group() -> None:
    texts = ["1.9.4", "1.10.0", "1.10.2", "2.0.0", "2.1.0-rc1", "0.9"]
    given_ = assign(_candidates(texts))
    assert dict(zip(texts, given_, strict=True)) == {
        "1.9.4": ("1.9",),
        "1.10.0": (),
        "1.10.2": ("1.10", "1"),
        "2.0.0": ("2.0", "2", "latest"),
        "2.1.0-rc1": (),  # a pre-release floats nothing, even the newest
        "0.9": ("0.9", "0"),
    }


def test_assign_per_suffix() -> None:
    texts = ["3.11.9", "3.12.7", "3.13.0"]
    given_ = assign(_candidates(texts, ("", "-slim")))
    assert given_ == [("3.11",), ("3.11-slim",), ("3.12",), ("3.12-slim",),
                      ("3.13", "3", "latest"), ("3.13-slim", "3-slim", "slim")]


def test_assign_with_suffixes_in_the_versions() -> None:
    # the newest -slim is not the newest version: its suffix is its own group
    texts = ["3.12.7-slim", "3.13.0", "3.12.6-slim", "3.14.0-rc1-slim"]
    assert assign(_candidates(texts)) == [
        ("3.12-slim", "3-slim", "slim"), ("3.13", "3", "latest"), (), ()]


def test_assign_v_prefix_floats_plain_numbers() -> None:
    assert assign(_candidates(["v1.2.3", "v1.3.0"])) == [("1.2",), ("1.3", "1", "latest")]


def test_assign_only_pre_releases_floats_nothing() -> None:
    assert assign(_candidates(["2.0.0-rc1", "2.0.0-rc2"])) == [(), ()]


def test_assign_refuses_equal_versions_in_one_group() -> None:
    with pytest.raises(ValueError, match=re.escape("'1.2' and '1.2.0' are equal")):
        assign(_candidates(["1.2", "1.2.0"]))


_numbers = st.integers(min_value=0, max_value=12)
_version_text = st.builds(
    lambda v, major, minor, patch, pre: (
        ("v" if v else "") + str(major)
        + (f".{minor}" if minor is not None else "")
        + (f".{patch}" if minor is not None and patch is not None else "")
        + pre),
    st.booleans(), _numbers, st.none() | _numbers, st.none() | _numbers,
    st.sampled_from(["", "", "", "-rc1", "-beta.2", "a1"]),
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(_version_text, min_size=1, max_size=10,
                      unique_by=lambda t: _v(t).key),
       suffixes=st.sampled_from([("",), ("", "-slim"), ("-alpine", "", "-slim")]))
def test_property_every_alias_on_the_highest_of_its_group_only(
    texts: list[str], suffixes: tuple[str, ...]
) -> None:
    candidates = _candidates(texts, suffixes)
    given_ = assign(candidates)
    groups: dict[tuple[object, int, str], list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        if c.version.release:
            for j, alias in enumerate(c.aliases):
                if alias is not None:
                    groups[(c.partition, j, alias)].append(i)
    holders: dict[tuple[object, str], list[int]] = defaultdict(list)
    for i, aliases in enumerate(given_):
        assert len(set(aliases)) == len(aliases)
        if not candidates[i].version.release:
            assert aliases == ()
        for alias in aliases:
            assert alias in candidates[i].aliases  # only aliases it rendered
            holders[(candidates[i].partition, alias)].append(i)
    for (partition, _, alias), members in groups.items():
        highest = max(members, key=lambda i: candidates[i].version.key)
        assert holders[(partition, alias)] == [highest], (alias, texts)
    # every alias lands on exactly one list of its partition
    assert all(len(held) == 1 for held in holders.values())


# ------------------------------------------------------------------ plans


def _doc(versions: list[str], *, flavors: list[str] | None = None,
         aliases: str = "{version: version, suffix: flavor}", extra: str = "") -> str:
    flavor = flavors if flavors is not None else [""]
    return "\n".join([
        "matrix:",
        "  version: [" + ", ".join(f'"{v}"' for v in versions) + "]",
        "  flavor: [" + ", ".join(f'"{f}"' for f in flavor) + "]",
        f"image: {HOST}/python:{{version}}{{flavor}}",
        f"aliases: {aliases}",
        "platforms: [linux/amd64, linux/arm64/v8]",
        f"template: {HOST}/python-{{arch}}:{{version}}{{flavor}}",
        extra,
    ])


def _tags(lists: list[PlanList]) -> dict[str, list[str]]:
    return {str(p.target.tag): p.tags for p in lists}


def test_plan_default_aliases_per_flavor() -> None:
    lists = parse_documents(_doc(["3.11.9", "3.12.6", "3.12.7", "3.13.0", "3.14.0rc1"],
                                 flavors=["", "-slim"]))
    assert _tags(lists) == {
        "3.11.9": ["3.11.9", "3.11"],
        "3.11.9-slim": ["3.11.9-slim", "3.11-slim"],
        "3.12.6": ["3.12.6"],
        "3.12.6-slim": ["3.12.6-slim"],
        "3.12.7": ["3.12.7", "3.12"],
        "3.12.7-slim": ["3.12.7-slim", "3.12-slim"],
        "3.13.0": ["3.13.0", "3.13", "3", "latest"],
        "3.13.0-slim": ["3.13.0-slim", "3.13-slim", "3-slim", "slim"],
        "3.14.0rc1": ["3.14.0rc1"],
        "3.14.0rc1-slim": ["3.14.0rc1-slim"],
    }
    newest = lists[6]
    assert newest.aliases == ("3.13", "3", "latest")
    assert newest.extra_tags == ("3.13", "3", "latest")
    assert [str(e.ref) for e in newest.entries] == [
        f"{HOST}/python-amd64:3.13.0", f"{HOST}/python-arm64:3.13.0"]


def test_plan_aliases_come_after_the_tags_written_and_placeholders_render_everywhere() -> None:
    text = _doc(["v1.9.0", "v1.10.0"], aliases="{version: version}",
                extra='tags: ["{major}.{minor}.{patch}-stable"]\n'
                      'annotations: {org.opencontainers.image.version: "{major}.{minor}"}')
    lists = parse_documents(text)
    assert _tags(lists) == {"v1.9.0": ["v1.9.0", "1.9.0-stable", "1.9"],
                            "v1.10.0": ["v1.10.0", "1.10.0-stable", "1.10", "1", "latest"]}
    assert lists[1].annotations == {"org.opencontainers.image.version": "1.10"}


def test_plan_alias_templates_written() -> None:
    text = _doc(["1.2.3", "1.3.0", "2.0.0"], flavors=["", "-alpine"],
                aliases='{version: version, suffix: flavor, tags: ["{major}{suffix}", '
                        '"latest{suffix}", "stable{flavor}", "v{major}.{minor}{suffix}"]}')
    assert _tags(parse_documents(text)) == {
        "1.2.3": ["1.2.3", "v1.2"],
        "1.2.3-alpine": ["1.2.3-alpine", "v1.2-alpine"],
        "1.3.0": ["1.3.0", "1", "v1.3"],
        "1.3.0-alpine": ["1.3.0-alpine", "1-alpine", "v1.3-alpine"],
        "2.0.0": ["2.0.0", "2", "latest", "stable", "v2.0"],
        "2.0.0-alpine": ["2.0.0-alpine", "2-alpine", "latest-alpine", "stable-alpine",
                         "v2.0-alpine"],
    }


def test_plan_suffix_in_the_version_values() -> None:
    text = "\n".join([
        "matrix:",
        '  version: ["3.12.6-slim", "3.12.7", "3.12.7-slim", "3.13.0"]',
        f"image: {HOST}/python:{{version}}",
        "aliases: {version: version}",
        "manifests:",
        f"  - image: {HOST}/python-amd64:{{version}}",
    ])
    assert _tags(parse_documents(text)) == {
        "3.12.6-slim": ["3.12.6-slim"],
        "3.12.7": ["3.12.7", "3.12"],
        "3.12.7-slim": ["3.12.7-slim", "3.12-slim", "3-slim", "slim"],
        "3.13.0": ["3.13.0", "3.13", "3", "latest"],
    }


def test_plan_two_suffix_keys_in_the_order_listed() -> None:
    text = "\n".join([
        "matrix:",
        '  version: ["3.12.7", "3.13.0"]',
        '  distro: ["-bookworm", "-alpine"]',
        '  variant: ["", "-slim"]',
        f"image: {HOST}/python:{{version}}{{variant}}{{distro}}",
        "aliases: {version: version, suffix: [variant, distro]}",
        "manifests:",
        f"  - image: {HOST}/python-amd64:{{version}}{{variant}}{{distro}}",
    ])
    tags = _tags(parse_documents(text))
    assert tags["3.13.0-slim-bookworm"] == [
        "3.13.0-slim-bookworm", "3.13-slim-bookworm", "3-slim-bookworm", "slim-bookworm"]
    assert tags["3.13.0-alpine"] == ["3.13.0-alpine", "3.13-alpine", "3-alpine", "alpine"]
    assert tags["3.12.7-slim-alpine"] == ["3.12.7-slim-alpine", "3.12-slim-alpine"]
    assert len(tags) == 8


def test_plan_pre_releases_anywhere_in_the_value_float_nothing() -> None:
    text = "\n".join([
        "matrix:",
        '  version: ["1.2.3-slim", "1.3.0-slim-rc1", "1.2.3", "1.2.4-b1", "1.2.5-prerelease",'
        ' "1.2.6-a1"]',
        f"image: {HOST}/app:{{version}}",
        "aliases: {version: version}",
        "manifests:",
        f"  - image: {HOST}/app-amd64:{{version}}",
    ])
    assert _tags(parse_documents(text)) == {
        "1.2.3-slim": ["1.2.3-slim", "1.2-slim", "1-slim", "slim"],
        "1.3.0-slim-rc1": ["1.3.0-slim-rc1"],
        "1.2.3": ["1.2.3", "1.2", "1", "latest"],
        "1.2.4-b1": ["1.2.4-b1"],
        "1.2.5-prerelease": ["1.2.5-prerelease"],
        "1.2.6-a1": ["1.2.6-a1"],
    }
    same = text.replace('"1.2.3", ', '"1.3.0-rc1-slim", ')
    assert _error(same) == (
        "release.yaml: document 1: matrix: version: '1.3.0-slim-rc1' and '1.3.0-rc1-slim' are "
        "the same version; give each version once")


def test_plan_versions_without_minor_or_patch() -> None:
    text = _doc(["7", "8.1", "8.2"], aliases="{version: version}")
    # 7 has no minor: {major}.{minor} does not apply to it; 8.2's own tag is its minor alias
    assert _tags(parse_documents(text)) == {
        "7": ["7"], "8.1": ["8.1"], "8.2": ["8.2", "8", "latest"]}


def test_plan_other_matrix_keys_partition_the_groups() -> None:
    text = "\n".join([
        "matrix:",
        "  app: [web, api]",
        '  version: ["1.0.0", "1.1.0"]',
        f"image: {HOST}/{{app}}:{{version}}",
        "aliases: {version: version}",
        "manifests:",
        f"  - image: {HOST}/{{app}}-amd64:{{version}}",
    ])
    lists = parse_documents(text)
    assert [(p.target.repository, p.tags) for p in lists] == [
        ("web", ["1.0.0", "1.0"]), ("web", ["1.1.0", "1.1", "1", "latest"]),
        ("api", ["1.0.0", "1.0"]), ("api", ["1.1.0", "1.1", "1", "latest"])]


def _error(text: str) -> str:
    with pytest.raises(PlanError) as caught:
        parse_documents(text, "release.yaml")
    assert caught.value.exit_code == 2
    return caught.value.one_line()


def test_a_value_that_is_not_a_version() -> None:
    assert _error(_doc(["1.2.3", "latest"])) == (
        "release.yaml: document 1: matrix: version: 'latest' is not a version: expected "
        "[v]MAJOR[.MINOR[.PATCH]][PRERELEASE][-SUFFIX], e.g. 1.2.3, v2.1, 3.12.1-slim, "
        "1.2.3-rc1; aliases.version names the matrix key of versions (version)")


def test_other_alias_errors() -> None:
    assert _error(_doc(["1.2", "1.2.0"])) == (
        "release.yaml: document 1: matrix: version: '1.2' and '1.2.0' are the same version; "
        "give each version once")
    assert _error(_doc(["1.2"], aliases="{version: release}")) == (
        "release.yaml: document 1: aliases.version: 'release' is not a matrix key; "
        "the matrix keys are version, flavor")
    assert _error(_doc(["1.2"], aliases="{version: version, suffix: [flavor, flavour]}")) == (
        "release.yaml: document 1: aliases.suffix[1]: 'flavour' is not a matrix key; "
        "the matrix keys are version, flavor")
    assert _error(_doc(["1.2"], aliases="{version: version, suffix: {a: b}}")) == (
        "release.yaml: document 1: aliases.suffix: expected a matrix key or a list of matrix "
        "keys, got a mapping; write suffix: flavor, or suffix: [variant, distro]")
    assert _error(_doc(["1.2"], aliases="{version: version, suffix: version}")) == (
        "release.yaml: document 1: aliases.suffix: 'version' is the version key "
        "(aliases.version); a suffix key holds variants such as -slim; a suffix in the "
        "versions themselves (3.12.7-slim) is used without one")
    assert _error(_doc(["1.2"], aliases="{version: version, suffix: [flavor, version]}")) == (
        "release.yaml: document 1: aliases.suffix[1]: 'version' is the version key "
        "(aliases.version); a suffix key holds variants such as -slim; a suffix in the "
        "versions themselves (3.12.7-slim) is used without one")
    assert _error(_doc(["1.2"], aliases="{version: version, suffix: [flavor, flavor]}")) == (
        "release.yaml: document 1: aliases.suffix[1]: 'flavor' given twice; "
        "name each suffix key once")
    # one key written alone is aliases.suffix, not aliases.suffix[0]
    assert _error(_doc(["1.2"], aliases="{version: version, suffix: flavour}")) == (
        "release.yaml: document 1: aliases.suffix: 'flavour' is not a matrix key; "
        "the matrix keys are version, flavor")
    assert _error(_doc(["1.2"], aliases='{version: version, tags: ["{mayor}"]}')).startswith(
        "release.yaml: document 1: aliases.tags[0]: unknown placeholder {mayor}; "
        "placeholders defined for aliases.tags[0]: {version}, {flavor}, {major}, {minor}, "
        "{patch}, {suffix}, {latest}")
    assert _error(_doc(["1.2"], aliases='{version: version, tags: ["{major}+x"]}')) == (
        "release.yaml: document 1 (version='1.2', flavor=''): aliases.tags[0]: invalid tag "
        "'1+x'; a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' "
        "or '-'")
    assert _error(_doc(["1.2"], aliases="{version: version, latest: x}")).startswith(
        "release.yaml: document 1: aliases: unknown key 'latest'")
    # a version placeholder the version has no number for, in a template of every list
    assert _error(_doc(["1.2"], extra='tags: ["{major}.{minor}.{patch}"]')) == (
        "release.yaml: document 1 (version='1.2', flavor=''): tags[0]: {patch}: version "
        "'1.2' has no patch number; every list of the document renders tags[0]: give each "
        "version a patch number, or use {patch} in aliases.tags only (an alias template "
        "skips a version without it)")
    text = _doc(["1.2"]).replace("flavor:", "major:").replace("{flavor}", "{major}")
    assert _error(text.replace("suffix: flavor", "suffix: major")) == (
        "release.yaml: document 1: matrix: key 'major' is the {major} placeholder of "
        "aliases; rename the matrix key")
    manifest_tool = f"image: {HOST}/app:1\naliases: {{version: version}}\nmanifests:\n" \
        f"  - image: {HOST}/app-amd64:1\n"
    assert _error(manifest_tool).startswith(
        "release.yaml: document 1: unknown key 'aliases' (aliases belong to a compact "
        "document: one with a matrix key)")


def test_an_alias_written_elsewhere_is_still_one_list_per_tag() -> None:
    other = f"image: {HOST}/python:latest\nmanifests:\n  - image: {HOST}/python-amd64:x\n"
    text = _doc(["3.12.7", "3.13.0"]) + "\n---\n" + other
    assert _error(text) == (
        "release.yaml: document 2: image: registry.example.com/python:latest is also an "
        "alias of document 1 (version='3.13.0', flavor=''); each tag can be written by one "
        "list only; document 1 gives 'latest' as an alias: write it in no other list, or "
        "leave the template giving it out of document 1's aliases.tags")
    # the other way round: an alias of document 2 is a tag written in document 1
    tagged = f"image: {HOST}/python:3.0.0\ntags: ['3']\nmanifests:\n" \
        f"  - image: {HOST}/python-amd64:x\n"
    assert _error(tagged + "---\n" + _doc(["3.12.7"])) == (
        "release.yaml: document 2 (version='3.12.7', flavor=''): aliases: "
        "registry.example.com/python:3 is also a tag of document 1; each tag can be written "
        "by one list only; document 2 gives '3' as an alias: write it in no other list, or "
        "leave the template giving it out of document 2's aliases.tags")
    # a version whose own tag is another version's alias: 3 is the target of 3's list
    assert _error(_doc(["3", "3.1"], aliases="{version: version}")) == (
        "release.yaml: document 1 (version='3.1', flavor=''): aliases: "
        "registry.example.com/python:3 is also the target of document 1 (version='3', "
        "flavor=''); each tag can be written by one list only")
    # a matrix key left out of the aliases: two lists would get the same alias
    unmarked = _doc(["1.0.0"], flavors=["", "-slim"], aliases="{version: version}")
    assert _error(unmarked) == (
        "release.yaml: document 1 (version='1.0.0', flavor='-slim'): aliases: "
        "registry.example.com/python:1.0 is also an alias of document 1 (version='1.0.0', "
        "flavor=''); each tag can be written by one list only; add flavor to aliases.suffix")


def test_a_fixed_tag_in_a_matrix_of_versions_points_at_aliases() -> None:
    # the case: every combination gets latest
    text = _doc(["1.0.0", "1.1.0"], aliases="{version: version}").replace(
        "aliases: {version: version}", 'tags: ["{version}-stable", latest]')
    assert _error(text) == (
        "release.yaml: document 1 (version='1.1.0', flavor=''): tags: "
        "registry.example.com/python:latest is also a tag of document 1 (version='1.0.0', "
        "flavor=''); each tag can be written by one list only; to give a tag such as latest "
        "to the newest version only, mark the version key with aliases: (docs/plan.md)")
    fixed = text.replace('tags: ["{version}-stable", latest]',
                         'tags: ["{version}-stable"]\naliases: {version: version}')
    assert _tags(parse_documents(fixed)) == {
        "1.0.0": ["1.0.0", "1.0.0-stable", "1.0"],
        "1.1.0": ["1.1.0", "1.1.0-stable", "1.1", "1", "latest"]}


# the QA tester's plan: the flavours written without '-', the '-' in the image
QA = "\n".join([
    "matrix:",
    '  version: ["1.2.3", "1.3.0"]',
    "  flavor: [alpine, bookworm]",
    f"image: {HOST}/app:{{version}}-{{flavor}}",
    "aliases: {version: version, suffix: flavor}",
    "manifests:",
    f"  - image: {HOST}/app-amd64:{{version}}-{{flavor}}",
])
SAME = "each tag can be written by one list only"


def test_a_suffix_value_must_start_with_a_separator() -> None:
    # it would make 1.2alpine, 1alpine: refused, naming the key and the value
    assert _error(QA) == (
        "release.yaml: document 1: matrix: flavor: suffix value 'alpine' does not start with "
        "'-' (aliases would read 1.2alpine); write '-alpine': a value of an aliases.suffix key "
        "is '' or starts with '-' or '_', and {flavor} where the templates have -{flavor}")
    # the value is named whichever suffix key and value it is; the version's own suffix shows
    text = _doc(["v2-slim"], flavors=["", "-a", "b"],
                aliases="{version: version, suffix: [flavor]}")
    assert _error(text) == (
        "release.yaml: document 1: matrix: flavor: suffix value 'b' does not start with '-' "
        "(aliases would read 2-slimb); write '-b': a value of an aliases.suffix key is '' or "
        "starts with '-' or '_'")
    # as advised: the tags look right
    fixed = QA.replace("[alpine, bookworm]", "[-alpine, -bookworm]").replace("-{flavor}",
                                                                             "{flavor}")
    assert _tags(parse_documents(fixed)) == {
        "1.2.3-alpine": ["1.2.3-alpine", "1.2-alpine"],
        "1.2.3-bookworm": ["1.2.3-bookworm", "1.2-bookworm"],
        "1.3.0-alpine": ["1.3.0-alpine", "1.3-alpine", "1-alpine", "alpine"],
        "1.3.0-bookworm": ["1.3.0-bookworm", "1.3-bookworm", "1-bookworm", "bookworm"],
    }
    underscore = fixed.replace("[-alpine, -bookworm]", '["", _alpine]')
    assert _tags(parse_documents(underscore))["1.3.0_alpine"] == [
        "1.3.0_alpine", "1.3_alpine", "1_alpine", "alpine"]
    # a key that is not a suffix key may hold any value
    other = _doc(["1.0.0"], flavors=["alpine"], aliases="{version: version}")
    assert _tags(parse_documents(other)) == {"1.0.0alpine": ["1.0.0alpine", "1.0", "1",
                                                             "latest"]}


def test_a_fixed_tag_in_a_document_with_aliases() -> None:
    fixed = _doc(["1.0.0", "1.1.0"], flavors=["", "-slim"], extra="tags: [latest]")
    # latest is one of the aliases: the advice is to remove it from tags
    assert _error(fixed) == (
        "release.yaml: document 1 (version='1.0.0', flavor='-slim'): tags: "
        "registry.example.com/python:latest is also a tag of document 1 (version='1.0.0', "
        f"flavor=''); {SAME}; aliases: gives latest to the newest version already: remove it "
        "from tags")
    # slim is the {latest} alias of the -slim lists
    slim = _doc(["1.0.0", "1.1.0"], flavors=["", "-slim"], extra="tags: [slim]")
    assert _error(slim).endswith(
        f"{SAME}; aliases: gives slim to the newest version already: remove it from tags")
    # a tag no alias template gives: write it in aliases.tags
    stable = _doc(["1.0.0", "1.1.0"], extra="tags: [stable]")
    assert _error(stable) == (
        "release.yaml: document 1 (version='1.1.0', flavor=''): tags: "
        "registry.example.com/python:stable is also a tag of document 1 (version='1.0.0', "
        f"flavor=''); {SAME}; to give stable to the newest version only, write it in "
        "aliases.tags (docs/plan.md)")
    as_advised = _doc(["1.0.0", "1.1.0"],
                      aliases='{version: version, tags: ["{major}{suffix}", stable]}')
    assert _tags(parse_documents(as_advised)) == {
        "1.0.0": ["1.0.0"], "1.1.0": ["1.1.0", "1", "stable"]}


def test_alias_collisions_say_what_to_change() -> None:
    # two documents of one repository, each with aliases
    def one(version: str) -> str:
        return "\n".join([
            "matrix:", f'  version: ["{version}"]', f"image: {HOST}/app:{{version}}",
            "aliases: {version: version}", "manifests:",
            f"  - image: {HOST}/app-amd64:{{version}}"])

    assert _error(one("1.1.0") + "\n---\n" + one("2.0.0")) == (
        "release.yaml: document 2 (version='2.0.0'): aliases: registry.example.com/app:latest "
        f"is also an alias of document 1 (version='1.1.0'); {SAME}; aliases are computed per "
        "document: put these versions in one document, or leave the template giving 'latest' "
        "out of one document's aliases.tags")
    # a flavour key left out of aliases.suffix: two lists would get each alias
    assert _error(_doc(["1.0.0", "1.1.0"], flavors=["-alpine", "-slim"],
                       aliases="{version: version}")) == (
        "release.yaml: document 1 (version='1.0.0', flavor='-slim'): aliases: "
        "registry.example.com/python:1.0 is also an alias of document 1 (version='1.0.0', "
        f"flavor='-alpine'); {SAME}; add flavor to aliases.suffix")
    two = "\n".join([
        "matrix:", '  version: ["1.0.0"]', '  distro: ["", "-alpine"]', '  variant: ["", "-slim"]',
        f"image: {HOST}/app:{{version}}{{variant}}{{distro}}", "aliases: {version: version}",
        "manifests:", f"  - image: {HOST}/app-amd64:{{version}}{{variant}}{{distro}}"])
    assert _error(two) == (
        "release.yaml: document 1 (version='1.0.0', distro='', variant='-slim'): aliases: "
        "registry.example.com/app:1.0 is also an alias of document 1 (version='1.0.0', "
        f"distro='', variant=''); {SAME}; add variant to aliases.suffix")
    assert _error(two.replace("distro: [\"\", \"-alpine\"]", "distro: [\"-alpine\", \"\"]")
                  .replace('variant: ["", "-slim"]', 'variant: ["-slim"]')) == (
        "release.yaml: document 1 (version='1.0.0', distro='', variant='-slim'): aliases: "
        "registry.example.com/app:1.0 is also an alias of document 1 (version='1.0.0', "
        f"distro='-alpine', variant='-slim'); {SAME}; add distro to aliases.suffix")
    # an alias template without {suffix}: every suffix renders the same tag
    assert _error(_doc(["1.0.0"], flavors=["", "-slim"],
                       aliases='{version: version, suffix: flavor, tags: ["{major}-stable"]}')
                  ) == (
        "release.yaml: document 1 (version='1.0.0', flavor='-slim'): aliases: "
        "registry.example.com/python:1-stable is also an alias of document 1 "
        f"(version='1.0.0', flavor=''); {SAME}; aliases.tags[0] ('{{major}}-stable') renders "
        "one tag for every suffix: use {suffix} or {latest} in it")
    suffixed = "\n".join([
        "matrix:", '  version: ["1.0.0", "1.0.0-slim"]', f"image: {HOST}/app:{{version}}",
        'aliases: {version: version, tags: ["{major}.{minor}", "{major}{suffix}"]}',
        "manifests:", f"  - image: {HOST}/app-amd64:{{version}}"])
    assert _error(suffixed) == (
        "release.yaml: document 1 (version='1.0.0-slim'): aliases: registry.example.com/app:1.0 "
        f"is also an alias of document 1 (version='1.0.0'); {SAME}; aliases.tags[0] "
        "('{major}.{minor}') renders one tag for every suffix: use {suffix} or {latest} in it")


ALIASES_HINT = ("write aliases: {version: KEY}, optionally with suffix: KEY or [KEYS] and "
                "tags: [TEMPLATES] (docs/plan.md)")
MATRIX_HINT = ("fix the matrix document (docs/plan.md: matrix: {KEY: [VALUES]}, image and "
               "tags using {KEY}, platforms and template, or manifests)")
TAG_HINT = "a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"


@pytest.mark.parametrize(("aliases", "extra", "line"), [
    ("version", "",
     "document 1: aliases: expected a mapping with keys version, suffix, tags, got 'version'; "
     "write aliases: {version: version} (docs/plan.md)"),
    ("[version]", "",
     "document 1: aliases: expected a mapping with keys version, suffix, tags, got a list; "
     + ALIASES_HINT),
    ("{version: [version]}", "",
     "document 1: aliases.version: expected a string, got a list; " + ALIASES_HINT),
    ('{version: version, tags: "{major}"}', "",
     "document 1: aliases.tags: expected a list of strings, got '{major}'; write alias "
     "templates as a list: tags: ['{major}']"),
    ('{version: version, tags: ["{major}", [x]]}', "",
     "document 1: aliases.tags[1]: expected a string, got a list; " + ALIASES_HINT),
    ('{version: version, tags: ["bad tag!"]}', "",
     "document 1 (version='1.2.3', flavor=''): aliases.tags[0]: invalid tag 'bad tag!'; "
     + TAG_HINT),
    ('{version: version, tags: ["{major}.{minor}{suffix"]}', "",
     "document 1: aliases.tags[0]: invalid template '{major}.{minor}{suffix': expected '}' "
     "before end of string; close each placeholder: {KEY}; write {{ and }} for a literal "
     "brace"),
    ("{version: version}", 'tags: ["{major}.{minor}{suffix"]',
     "document 1: tags[0]: invalid template '{major}.{minor}{suffix': expected '}' before end "
     "of string; close each placeholder: {KEY}; write {{ and }} for a literal brace"),
    ("{version: version}", 'tags: ["{patch}-{suffix}"]',
     "document 1: tags[0]: unknown placeholder {suffix}; {suffix} is a placeholder of "
     "aliases.tags only; placeholders defined for tags[0]: {version}, {flavor}, {major}, "
     "{minor}, {patch}"),
    ("{version: version, suffix: flavor}", 'tags: ["x y"]',
     "document 1 (version='1.2.3', flavor=''): tags: invalid tag 'x y'; " + TAG_HINT),
    ("~", 'tags: ["{major}"]',
     "document 1: tags[0]: unknown placeholder {major}; {major} is a placeholder of aliases: "
     "mark the matrix key of versions with aliases: {version: KEY} (docs/plan.md)"),
    ("~", 'tags: ["{latest}"]',
     "document 1: tags[0]: unknown placeholder {latest}; {latest} is a placeholder of "
     "aliases: mark the matrix key of versions with aliases: {version: KEY} (docs/plan.md)"),
    ("~", 'tags: ["{mayor}"]',
     "document 1: tags[0]: unknown placeholder {mayor}; placeholders defined for tags[0]: "
     "{version}, {flavor}"),
    ("~", "platforms: [linux]",
     "document 1: platforms[0]: invalid platform 'linux': expected os/arch[/variant]; "
     + MATRIX_HINT),
])
def test_matrix_and_aliases_errors_advise_for_a_matrix_document(
    aliases: str, extra: str, line: str
) -> None:
    text = _doc(["1.2.3"], flavors=["", "-slim"], aliases=aliases, extra=extra)
    if extra.startswith("platforms"):
        text = text.replace("platforms: [linux/amd64, linux/arm64/v8]\n", "")
    message = _error(text)
    assert message == f"release.yaml: {line}"
    assert "manifest-tool" not in message


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(
    st.builds(lambda v, a, b, c, pre: f"{'v' if v else ''}{a}.{b}.{c}{pre}", st.booleans(),
              st.integers(0, 4), st.integers(0, 4), st.integers(0, 4),
              st.sampled_from(["", "", "-rc1"])),
    min_size=1, max_size=8, unique_by=lambda t: _v(t).key),
    flavors=st.sampled_from([[""], ["", "-slim"], ["-alpine", ""]]))
def test_property_plan_aliases_land_on_the_newest_of_each_line(
    texts: list[str], flavors: list[str]
) -> None:
    lists = parse_documents(_doc(texts, flavors=flavors))  # no tag written by two lists
    releases = [t for t in texts if _v(t).release]
    expected: dict[str, set[str]] = {f"{t}{f}": set() for t in texts for f in flavors}
    for flavor in flavors:
        lines: dict[str, list[str]] = defaultdict(list)
        for t in releases:
            v = _v(t)
            lines[f"{v.major}.{v.minor}{flavor}"].append(t)
            lines[f"{v.major}{flavor}"].append(t)
            lines[latest_name(flavor)].append(t)
        for alias, members in lines.items():
            expected[f"{max(members, key=lambda t: _v(t).key)}{flavor}"].add(alias)
    assert {str(p.target.tag): set(p.aliases) for p in lists} == expected
    assert all(p.tags[len(p.tags) - len(p.aliases):] == list(p.aliases) for p in lists)


# ------------------------------------------------------------------ docs/plan.md


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def test_docs_worked_example_is_the_table_shown() -> None:
    text = (REPO_ROOT / "docs" / "plan.md").read_text()
    section = _section(text, "### Release aliases computed from versions")
    [block, templates] = re.findall(r"<!-- plan lists=\d+ -->\n```yaml\n(.*?)```", section,
                                    re.DOTALL)
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, re.MULTILINE)
    table = {target: re.findall(r"`([^`]+)`", tags) for target, tags in rows
             if parse_version(target) is not None}  # the tag tables, not the key table
    lists = parse_documents(block)
    assert {str(p.target.tag): p.tags[1:] for p in lists} == {
        target: table[target] for target in table if target.startswith("3.")}
    assert len(lists) == 8
    # the alias templates example: its table gives the aliases after the -stable tag
    lists = parse_documents(templates)
    assert {str(p.target.tag): p.tags[2:] for p in lists} == {
        target: table[target] for target in table if not target.startswith("3.")}
    assert [p.tags[1] for p in lists][:2] == ["1.2.3-stable", "1.2.3-alpine-stable"]
    assert len(lists) == 6
    assert len(table) == 14
    assert DEFAULT_ALIASES == ("{major}.{minor}{suffix}", "{major}{suffix}", "{latest}")
    assert "default `[" + ", ".join(f'"{t}"' for t in DEFAULT_ALIASES) + "]`" in section


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_dry_run_shows_the_computed_aliases(registry: RegistryServer, ns: str,
                                            tmp_path: Path) -> None:
    host = registry.host
    versions, flavors = ["1.9.1", "1.10.0", "2.0.0-rc1"], ["", "-slim"]
    names = [(f"{ns}/src:{v}{f}", Platform("linux", "amd64"), f"{ns} {v}{f}")
             for v, f in itertools.product(versions, flavors)]
    images = seed_built(host, names)
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n".join([
        "matrix:",
        "  version: [" + ", ".join(f'"{v}"' for v in versions) + "]",
        '  flavor: ["", "-slim"]',
        f"image: {host}/{ns}/app:{{version}}{{flavor}}",
        "aliases: {version: version, suffix: flavor}",
        "manifests:",
        f"  - image: {host}/{ns}/src:{{version}}{{flavor}}",
        "",
    ]))
    proc = manyfest("publish", "--dry-run", str(plan))
    assert proc.returncode == 0, proc.stderr
    assert "would publish 6 lists: 6 created, 0 updated, 0 unchanged, 0 failed" in proc.stderr
    digests = dict(re.findall(rf"^would create {re.escape(host)}/{ns}/app:(\S+) "
                              r"(sha256:[0-9a-f]{64})$", proc.stdout, re.MULTILINE))
    assert len(set(digests.values())) == 6, proc.stdout
    tags = {"1.9.1": ["1.9"], "1.9.1-slim": ["1.9-slim"],
            "1.10.0": ["1.10", "1", "latest"], "1.10.0-slim": ["1.10-slim", "1-slim", "slim"],
            "2.0.0-rc1": [], "2.0.0-rc1-slim": []}
    expected: list[str] = []
    for v, f in itertools.product(versions, flavors):
        target, image = f"{v}{f}", images[f"{ns}/src:{v}{f}"]
        expected.append(f"would create {host}/{ns}/app:{target} {digests[target]}")
        expected.extend(f"  mount {blob} from {host}/{ns}/src" for blob in image.blob_digests)
        expected.append(f"  push child {image.manifest.digest} (linux/amd64)")
        expected.extend(f"  put {host}/{ns}/app:{tag} -> {digests[target]} (new tag)"
                        for tag in [target, *tags[target]])
    assert proc.stdout.splitlines() == expected
