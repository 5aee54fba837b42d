"""Property-based tests of manyfest.ops.plan: generated plans parse as written, junk fails cleanly.

* Generated manifest-tool documents and compact ``matrix`` documents, written in varied YAML
  (block or flow collections; plain, single- or double-quoted scalars; empty documents in
  between), parse to the lists expected: targets, tags, annotations, entries in order, and
  every scalar keeping its written text (``1.10``, ``010``, ``386``, ``1e3``, ``yes``).
* Arbitrary text, YAML-flavoured text, random YAML documents over the plan's own keys, and
  valid plans with one node replaced by junk raise nothing but ``UsageError`` subclasses
  (``PlanError``): no yaml.YAMLError, TypeError, KeyError or RecursionError.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from manyfest import reference
from manyfest.errors import PlanError, UsageError
from manyfest.ops.plan import PlanEntry, PlanList, PlatformSpec, parse_documents

# --- writing YAML scalars and collections exactly -----------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.:/@+-]*[A-Za-z0-9_./@+-])?\Z")
_NULLS = {"~", "null", "Null", "NULL"}


@st.composite
def scalar(draw: st.DrawFn, text: str, flow: bool) -> str:
    """``text`` as a YAML scalar that BaseLoader reads back as exactly ``text``."""
    plain_ok = (
        bool(_PLAIN.match(text))
        and text not in _NULLS
        and not (flow and ":" in text)  # PyYAML refuses some ':' in flow plain scalars
    )
    styles = ["single", "double"] + (["plain", "plain"] if plain_ok else [])
    style = draw(st.sampled_from(styles))
    if style == "plain":
        return text
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    return json.dumps(text)


@st.composite
def flow_node(draw: st.DrawFn, node: Any) -> str:
    if isinstance(node, dict):
        items = [
            f"{draw(scalar(k, True))}: {draw(flow_node(v))}" for k, v in node.items()
        ]
        return "{" + ", ".join(items) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(draw(flow_node(v)) for v in node) + "]"
    return draw(scalar(node, True))


@st.composite
def block_mapping(draw: st.DrawFn, node: dict[str, Any], indent: int) -> str:
    """A mapping in block style, each value block or flow (empty collections: flow)."""
    pad = " " * indent
    lines = []
    for k, v in node.items():
        key = draw(scalar(k, False))
        if isinstance(v, (dict, list)) and v and draw(st.booleans()):
            lines.append(f"{pad}{key}:\n" + draw(block_node(v, indent + 2)))
        elif isinstance(v, (dict, list)):
            lines.append(f"{pad}{key}: {draw(flow_node(v))}\n")
        else:
            lines.append(f"{pad}{key}: {draw(scalar(v, False))}\n")
    return "".join(lines)


@st.composite
def block_node(draw: st.DrawFn, node: dict[str, Any] | list[Any], indent: int) -> str:
    pad = " " * indent
    if isinstance(node, dict):
        return draw(block_mapping(node, indent))
    lines = []
    for v in node:
        if isinstance(v, dict) and v and draw(st.booleans()):
            # "- key: value" with the rest of the mapping aligned under the first key
            body = draw(block_mapping(v, indent + 2))
            lines.append(pad + "- " + body[indent + 2 :])
        elif isinstance(v, (dict, list)):
            lines.append(f"{pad}- {draw(flow_node(v))}\n")
        else:
            lines.append(f"{pad}- {draw(scalar(v, False))}\n")
    return "".join(lines)


# --- plan vocabulary -----------------------------------------------------------------------

# Scalars that a YAML 1.1 loader other than BaseLoader would turn into numbers or booleans.
TRICKY = ["1.10", "010", "386", "1e3", "0x1F", "yes", "on", "true", "1_000", "0.5", "1.0"]
tag_text = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", fullmatch=True).filter(
        lambda t: t not in _NULLS
    ),
)
registries = st.sampled_from(
    ["", "localhost:5000/", "[::1]:5000/", "registry.example.com/", "docker.io/",
     "index.docker.io/", "127.0.0.1:5000/"]
)
namespace = st.from_regex(r"[a-z0-9]{1,6}(?:[-_.][a-z0-9]{1,4})?", fullmatch=True)
VALID_PLATFORMS = [
    {"os": "linux", "architecture": "386"},
    {"os": "linux", "architecture": "amd64", "variant": "v2"},
    {"os": "linux", "architecture": "arm", "variant": "v7"},
    {"os": "linux", "architecture": "arm64", "variant": "v8"},
    {"os": "linux", "architecture": "s390x"},
    {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1879"},
    {"variant": "v6"},  # partial: the rest comes from the image config, not checked here
    {"os.version": "1.10"},
    {},
]


@st.composite
def platform_override(draw: st.DrawFn) -> tuple[dict[str, Any], PlatformSpec]:
    """A platform mapping as written (any manifest-tool spelling) and what it means."""
    base = dict(draw(st.sampled_from(VALID_PLATFORMS)))
    features = draw(st.lists(st.sampled_from(["win32k", "sse4", "1.10"]), max_size=2))
    written: dict[str, Any] = {}
    for k, v in base.items():
        if k == "os.version" and draw(st.booleans()):
            k = "osversion"
        written[k] = v
    if features:
        key = draw(st.sampled_from(["os.features", "osfeatures"]))
        written[key] = draw(st.sampled_from([features, ",".join(features)]))
    keys = list(written)
    order = draw(st.permutations(keys))
    written = {k: written[k] for k in order}
    spec = PlatformSpec(
        architecture=base.get("architecture", ""),
        os=base.get("os", ""),
        variant=base.get("variant", ""),
        os_version=base.get("os.version", ""),
        os_features=features,
    )
    return written, spec


@dataclass
class Doc:
    """One generated document: its data (as written) and the lists it means."""

    data: dict[str, Any] | None
    lists: list[PlanList] = field(default_factory=list)


@st.composite
def manifest_tool_doc(draw: st.DrawFn, n: int) -> Doc:
    """A manifest-tool document; ``n`` makes its repository unique in the plan."""
    ns = draw(namespace)
    image = f"{draw(registries)}{ns}/app{n}"
    target_tag = draw(st.one_of(st.none(), tag_text))
    if target_tag is not None:
        image += f":{target_tag}"
    data: dict[str, Any] = {"image": image}
    tags = draw(st.lists(st.one_of(tag_text, st.just("latest")), max_size=4))
    if tags or draw(st.booleans()):
        data["tags"] = tags
    annotations = draw(st.dictionaries(
        st.sampled_from(["org.opencontainers.image.version", "a", "1.10"]), tag_text, max_size=2
    ))
    if annotations:
        data["annotations"] = annotations
    manifests = []
    entries = []
    for j in range(draw(st.integers(1, 4))):
        src = f"{draw(registries)}{ns}/src{j}" + draw(
            st.sampled_from(["", ":1.10", ":010", "@sha256:" + "ab" * 32])
        )
        entry: dict[str, Any] = {"image": src}
        override = None
        if draw(st.booleans()):
            entry["platform"], override = draw(platform_override())
        manifests.append(entry)
        entries.append(PlanEntry(reference.parse(src), override))
    data["manifests"] = manifests
    keys = draw(st.permutations(list(data)))
    data = {k: data[k] for k in keys}
    target = reference.parse(image)
    extra = tuple(t for t in dict.fromkeys(tags) if t != target.tag)
    return Doc(data, [PlanList(target, extra, annotations, tuple(entries), 0)])


# Matrix values: no '_' (the separator of expanded tags, so combinations never collide).
matrix_value = st.one_of(
    st.sampled_from([t for t in TRICKY if "_" not in t]),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,6}", fullmatch=True),
)
matrix_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,5}", fullmatch=True).filter(
    lambda k: k not in {"os", "arch", "variant"}
)
PLATFORM_TEXTS = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/386", "windows/amd64",
                  "linux/s390x"]


@st.composite
def matrix_doc(draw: st.DrawFn, n: int) -> Doc:
    """A compact document: a matrix and either platforms + template or manifests."""
    ns = draw(namespace)
    reg = draw(registries)
    keys = draw(st.lists(matrix_key, min_size=1, max_size=3, unique=True))
    matrix = {k: draw(st.lists(matrix_value, min_size=1, max_size=3, unique=True)) for k in keys}
    joined = "_".join(f"{{{k}}}" for k in keys)
    data: dict[str, Any] = {"matrix": matrix, "image": f"{reg}{ns}/c{n}:{joined}"}
    with_tags = draw(st.booleans())
    if with_tags:
        data["tags"] = [f"s_{joined}", "s_" + joined]  # repeated: kept once
    with_annotations = draw(st.booleans())
    if with_annotations:
        data["annotations"] = {"org.opencontainers.image.version": f"{{{keys[0]}}}{{{{x}}}}"}
    form = draw(st.sampled_from(["platforms", "manifests"]))
    if form == "platforms":
        platforms = draw(st.lists(st.sampled_from(PLATFORM_TEXTS), min_size=1, max_size=3,
                                  unique=True))
        data["platforms"] = platforms
        data["template"] = f"{reg}{ns}/c{n}-{{os}}-{{arch}}{{variant}}:{joined}"
    else:
        written = []
        for j in range(draw(st.integers(1, 3))):
            entry: dict[str, Any] = {"image": f"{reg}{ns}/m{j}:{{{draw(st.sampled_from(keys))}}}"}
            if draw(st.booleans()):
                entry["platform"], _ = draw(platform_override())
            written.append(entry)
        data["manifests"] = written
    order = draw(st.permutations(list(data)))
    data = {k: data[k] for k in order}

    lists = []
    for combination in itertools.product(*matrix.values()):
        values = dict(zip(keys, combination, strict=True))
        tag = "_".join(combination)
        target = reference.parse(f"{reg}{ns}/c{n}:{tag}")
        if form == "platforms":
            entries = []
            for text in data["platforms"]:
                os_, arch, *rest = text.split("/")
                variant = rest[0] if rest else ""
                src = f"{reg}{ns}/c{n}-{os_}-{arch}{variant}:{tag}"
                entries.append(PlanEntry(
                    reference.parse(src), PlatformSpec(architecture=arch, os=os_, variant=variant)
                ))
        else:
            entries = []
            for entry in data["manifests"]:
                src = entry["image"].format_map(values)
                override = None
                if "platform" in entry:
                    _, override = _spec_of(entry["platform"])
                entries.append(PlanEntry(reference.parse(src), override))
        lists.append(PlanList(
            target,
            (f"s_{tag}",) if with_tags else (),
            {"org.opencontainers.image.version": f"{combination[0]}{{x}}"}
            if with_annotations else {},
            tuple(entries),
            0,
        ))
    return Doc(data, lists)


def _spec_of(written: dict[str, Any]) -> tuple[dict[str, Any], PlatformSpec]:
    """The PlatformSpec a written platform mapping means (manifest-tool spellings)."""
    features = written.get("os.features", written.get("osfeatures", []))
    if isinstance(features, str):
        features = [f for f in features.split(",") if f]
    return written, PlatformSpec(
        architecture=written.get("architecture", ""),
        os=written.get("os", ""),
        variant=written.get("variant", ""),
        os_version=written.get("os.version", written.get("osversion", "")),
        os_features=list(features),
    )


@st.composite
def plans(draw: st.DrawFn) -> tuple[str, list[PlanList]]:
    """A plan file (text) of 1-4 documents, empty ones between, and the lists it means."""
    docs: list[Doc] = []
    for n in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 4)) == 0:
            docs.append(Doc(None))
        docs.append(draw(st.one_of(manifest_tool_doc(n), matrix_doc(n))))
    parts = []
    expected: list[PlanList] = []
    for number, doc in enumerate(docs, start=1):
        if doc.data is None:
            parts.append("")
            continue
        if draw(st.booleans()):
            parts.append(draw(block_mapping(doc.data, 0)))
        else:
            parts.append(draw(flow_node(doc.data)) + "\n")
        expected += [
            PlanList(p.target, p.extra_tags, p.annotations, p.entries, number) for p in doc.lists
        ]
    first = "---\n" if parts[0] == "" or draw(st.booleans()) else ""
    return first + "---\n".join(parts), expected


# --- properties: valid plans ---------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(plans())
def test_generated_plans_parse_as_written(plan: tuple[str, list[PlanList]]) -> None:
    text, expected = plan
    lists = parse_documents(text)
    assert lists == expected
    for got in lists:
        assert got.tags[0] == (got.target.tag or "latest")
        assert len(set(got.tags)) == len(got.tags)


@settings(max_examples=100, deadline=None)
@given(st.lists(tag_text, min_size=1, max_size=5), st.sampled_from(TRICKY))
def test_scalars_keep_their_written_text(tags: list[str], arch_like: str) -> None:
    text = (
        f"image: example.com/app:{tags[0]}\n"
        f"tags: [{', '.join(tags)}]\n"
        f"annotations: {{v: {arch_like}}}\n"
        "manifests:\n"
        f"  - image: example.com/src:{arch_like}\n"
        f"    platform: {{variant: {arch_like}, os.version: {arch_like}}}\n"
    )
    [got] = parse_documents(text)
    assert got.target.tag == tags[0]
    assert list(got.extra_tags) == [t for t in dict.fromkeys(tags) if t != tags[0]]
    assert got.annotations == {"v": arch_like}
    assert got.entries[0].ref.tag == arch_like
    assert got.entries[0].override == PlatformSpec(variant=arch_like, os_version=arch_like)


# --- properties: anything else fails with PlanError only ----------------------------------


def parse_or_usage_error(text: str) -> list[PlanList] | UsageError:
    """``parse_documents(text)`` or the UsageError it raised; anything else escapes."""
    try:
        return parse_documents(text)
    except UsageError as exc:
        return exc


_YAML_SOUP = [
    "image", "manifests", "matrix", "tags", "platform", "platforms", "template", "annotations",
    "os", "architecture", "variant", "os.version", "osversion", "os.features", "osfeatures",
    ": ", ":", "- ", "-", "\n", "  ", "[", "]", "{", "}", ", ", "?", "&a ", "*a", "!!str ",
    "!!null ", "'", '"', "#", "|", ">", "---\n", "...\n", "~", "null", "{os}", "{v}", "{{",
    "}}", "{", "alpine", "localhost:5000/a", "1.10", "linux/amd64", "%", "@", "`", "\t",
]
yaml_soup = st.lists(st.sampled_from(_YAML_SOUP), max_size=30).map("".join)

_KEYS = st.sampled_from([
    "image", "manifests", "matrix", "tags", "platform", "platforms", "template", "annotations",
    "os", "architecture", "variant", "os.version", "osversion", "os.features", "osfeatures",
    "v", "x",
])
junk = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
        st.text(max_size=12),
        st.sampled_from(["alpine", "localhost:5000/a:{v}", "{os}", "{v!x}", "{v:>{v}}",
                         "{0}", "{v.x}", "linux/amd64", "a/b/c/d", "{", "}", "", "a@b"]),
    ),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(
        st.one_of(_KEYS, st.text(max_size=5)), c, max_size=5
    )),
    max_leaves=20,
)


@st.composite
def damaged_plans(draw: st.DrawFn) -> str:
    """A valid plan document with one node replaced by junk, dumped by PyYAML."""
    doc = draw(st.one_of(manifest_tool_doc(0), matrix_doc(0)))
    assert doc.data is not None
    data: Any = doc.data
    paths = _paths(data)
    path = draw(st.sampled_from(paths))
    data = _replace(data, path, draw(junk))
    return yaml.safe_dump(data, default_flow_style=draw(st.booleans()))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}
    return [_replace(v, rest, value) if i == head else v for i, v in enumerate(node)]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), yaml_soup))
@example("? [a]\n: b\n")  # an unhashable key: TypeError leaked from the duplicate-key check
@example("matrix: {a: [x]}\n? {b: c}\n: d\n")
@example("a: \ud800")  # a lone surrogate: UnicodeEncodeError leaked from libyaml
def test_arbitrary_text_fails_only_with_plan_errors(text: str) -> None:
    result = parse_or_usage_error(text)
    if isinstance(result, UsageError):
        assert result.exit_code == 2
        assert result.message
    else:
        assert result


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.lists(junk, min_size=1, max_size=3).map(lambda docs: yaml.safe_dump_all(docs)),
    st.dictionaries(_KEYS, junk, max_size=6).map(yaml.safe_dump),
))
def test_random_yaml_documents_fail_only_with_plan_errors(text: str) -> None:
    parse_or_usage_error(text)


@settings(max_examples=200, deadline=None)
@given(damaged_plans())
def test_damaged_plans_fail_only_with_plan_errors(text: str) -> None:
    parse_or_usage_error(text)


# --- regression tests (minimal examples the properties found) -------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "? [a]\n: b\n",  # TypeError: unhashable type: 'list'
        "? {a: b}\n: c\n",
        "image: x\nmanifests:\n  - ? [a]\n    : b\n",
    ],
)
def test_unhashable_key_is_a_plan_error(text: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_documents(text)
    assert str(info.value).startswith("plan: invalid YAML: ")
    assert "unhashable" in str(info.value)


def test_lone_surrogate_is_a_plan_error() -> None:
    # libyaml encodes the text as UTF-8 first: UnicodeEncodeError leaked.
    with pytest.raises(PlanError) as info:
        parse_documents("image: \ud800\n")
    assert str(info.value).startswith("plan: invalid text: ")


@pytest.mark.parametrize("depth", [900, 999])
def test_deep_nesting_is_a_plan_error(depth: int) -> None:
    # libyaml accepts up to 1000 levels; constructing them in Python hit RecursionError.
    with pytest.raises(PlanError) as info:
        parse_documents("image: " + "[" * depth + "]" * depth + "\n")
    assert str(info.value) == "plan: the plan is nested too deeply to read"
