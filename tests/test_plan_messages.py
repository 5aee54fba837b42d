"""Plan validation errors in the plan's words: every kind of problem msgspec finds (unknown
key, missing key, wrong type, a value outside a fixed set) as one exact line naming the
document, the key's path, what was expected and what was given; unknown keys and values
get the nearest valid one, and the hint lists the keys of that mapping."""

from __future__ import annotations

import pytest

from manyfest.errors import PlanError
from manyfest.ops.plan import parse_documents

DEFAULT_HINT = PlanError.default_hint
MATRIX_HINT = (
    "fix the matrix document (docs/plan.md: matrix: {KEY: [VALUES]}, image and tags using "
    "{KEY}, platforms and template, or manifests)"
)
DOC_KEYS = (
    "the keys of a document are image, manifests, tags, annotations, require_platforms, "
    "platform_check, attestations, allow_duplicate_platforms, media_type, artifact_type, "
    "subject, labels_to_annotations, targets; those of a copy: document are copy, to, all_tags"
)
MATRIX_KEYS = (
    "the keys of a matrix document are matrix, image, tags, annotations, require_platforms, "
    "platform_check, attestations, allow_duplicate_platforms, media_type, artifact_type, "
    "subject, labels_to_annotations, targets, platforms, template, manifests, aliases; those "
    "of a copy: document are copy, to, all_tags"
)
PLATFORM_KEYS = "architecture, os, variant, os.version, os.features"
ONE = "manifests: [{image: a.io/y-amd64:1}]\n"
MATRIX = "matrix: {v: ['1']}\nimage: a.io/x:{v}\n"


def _error(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_documents(text, "plan.yaml")
    assert info.value.exit_code == 2
    return info.value


@pytest.mark.parametrize(("text", "message", "hint"), [
    # unknown keys: the nearest valid key of that mapping, and its keys in the hint
    ("image: a.io/y:1\ntag: [x]\n" + ONE,
     "unknown key 'tag' (did you mean 'tags'?)", DOC_KEYS),
    ("image: a.io/y:1\nanotations: {a: b}\n" + ONE,
     "unknown key 'anotations' (did you mean 'annotations'?)", DOC_KEYS),
    ("image: a.io/y:1\nzzz: x\n" + ONE, "unknown key 'zzz'", DOC_KEYS),
    ("image: a.io/y:1\nmanifests: [{image: a/b, platfrom: {os: linux}}]\n",
     "manifests[0]: unknown key 'platfrom' (did you mean 'platform'?)",
     "the keys of manifests[0] are image, platform"),
    ("image: a.io/y:1\nmanifests: [{image: a/b}, {image: a/c, platform: {arch: arm}}]\n",
     "manifests[1].platform: unknown key 'arch' (did you mean 'architecture'?)",
     f"the keys of manifests[1].platform are {PLATFORM_KEYS}"),
    ("image: a.io/y:1\nmanifests: [{image: a/b, platform: {architecure: arm}}]\n",
     "manifests[0].platform: unknown key 'architecure' (did you mean 'architecture'?)",
     f"the keys of manifests[0].platform are {PLATFORM_KEYS}"),
    ("image: a.io/y:1\nplatforms: [linux/amd64]\n" + ONE,
     "unknown key 'platforms' (platforms and template belong to a compact document: one "
     "with a matrix key)", DOC_KEYS),
    (MATRIX + "platform: [linux/amd64]\ntemplate: a.io/x-{arch}:{v}\n",
     "unknown key 'platform' (did you mean 'platforms'?)", MATRIX_KEYS),
    # missing keys: what the key holds
    ("image: a.io/y:1\n",
     "missing key 'manifests' (a list of mappings with keys image, platform)", DOC_KEYS),
    (ONE, "missing key 'image' (a string)", DOC_KEYS),
    ("image: a.io/y:1\nmanifests: [{platform: {os: linux}}]\n",
     "manifests[0]: missing key 'image' (a string)",
     "the keys of manifests[0] are image, platform"),
    ("matrix:\nimage: a.io/x:1\nplatforms: [linux/amd64]\ntemplate: a.io/x:1\n",
     "missing key 'matrix' (a mapping of strings to lists of strings)", MATRIX_KEYS),
    # wrong types: which key, what was expected, what was given
    ("image: a.io/y:1\ntags: latest\n" + ONE,
     "tags: expected a list of strings, got 'latest'", DEFAULT_HINT),
    ("image: a.io/y:1\ntags: [[a]]\n" + ONE, "tags[0]: expected a string, got a list",
     DEFAULT_HINT),
    ("image: a.io/y:1\ntags: ['1', ~]\n" + ONE, "tags[1]: expected a string, got null",
     DEFAULT_HINT),
    ("image: [a]\n" + ONE, "image: expected a string, got a list", DEFAULT_HINT),
    ("image: a.io/y:1\nannotations: [a]\n" + ONE,
     "annotations: expected a mapping of strings to strings, got a list", DEFAULT_HINT),
    ("image: a.io/y:1\nannotations: {a: {b: c}}\n" + ONE,
     "annotations['a']: expected a string, got a mapping", DEFAULT_HINT),
    ("image: a.io/y:1\nannotations: {~: b}\n" + ONE,
     "annotations: expected string keys, got null", DEFAULT_HINT),
    ("image: a.io/y:1\nmanifests: a/b\n",
     "manifests: expected a list of mappings with keys image, platform, got 'a/b'",
     DEFAULT_HINT),
    ("image: a.io/y:1\nmanifests: [a/b]\n",
     "manifests[0]: expected a mapping with keys image, platform, got 'a/b'", DEFAULT_HINT),
    ("image: a.io/y:1\nmanifests: [{image: a/b, platform: linux/amd64}]\n",
     f"manifests[0].platform: expected a mapping with keys {PLATFORM_KEYS}, got "
     "'linux/amd64'", DEFAULT_HINT),
    ("image: a.io/y:1\nmanifests: [{image: a/b, platform: {os: [linux]}}]\n",
     "manifests[0].platform.os: expected a string, got a list", DEFAULT_HINT),
    ("image: a.io/y:1\nmanifests: [{image: a/b, platform: {os.features: {a: b}}}]\n",
     "manifests[0].platform.os.features: expected a list of strings, got a mapping",
     DEFAULT_HINT),
    (MATRIX + "platforms: linux/amd64\ntemplate: a.io/x-{arch}:{v}\n",
     "platforms: expected a list of strings, got 'linux/amd64'", MATRIX_HINT),
    (MATRIX + "platforms: [linux/amd64]\ntemplate: [a]\n",
     "template: expected a string, got a list", MATRIX_HINT),
    ("matrix: [a]\nimage: a.io/x:1\nplatforms: [linux/amd64]\ntemplate: a.io/x:1\n",
     "matrix: expected a mapping of strings to lists of strings, got a list", MATRIX_HINT),
    ("image: a.io/y:1\nallow_duplicate_platforms: yes\n" + ONE,
     "allow_duplicate_platforms: expected true or false, got 'yes'", DEFAULT_HINT),
    # a value outside a fixed set: the allowed values, and the nearest
    ("image: a.io/y:1\nattestations: dorp\n" + ONE,
     "attestations: expected one of keep, drop, got 'dorp' (did you mean 'drop'?)", DEFAULT_HINT),
    ("image: a.io/y:1\nattestations: none\n" + ONE,
     "attestations: expected one of keep, drop, got 'none'", DEFAULT_HINT),
    ("image: a.io/y:1\nattestations: [keep]\n" + ONE,
     "attestations: expected one of keep, drop, got a list", DEFAULT_HINT),
])
def test_plan_errors_in_the_plans_words(text: str, message: str, hint: str) -> None:
    err = _error(text)
    assert (err.message, err.hint) == (f"plan.yaml: document 1: {message}", hint)


def test_the_document_is_counted_across_kinds() -> None:
    """The second document (a compact one after a manifest-tool one) is document 2."""
    err = _error("image: a.io/y:1\n" + ONE + "---\n" + MATRIX
                 + "platforms: [linux/amd64]\ntemplates: a.io/x-{arch}:{v}\n")
    assert err.one_line() == (
        "plan.yaml: document 2: unknown key 'templates' (did you mean 'template'?); "
        + MATRIX_KEYS
    )


@pytest.mark.parametrize(("text", "message"), [
    ("matrix: {v: []}\nimage: a.io/x:{v}\n", "matrix: v: no values"),
    ("matrix: {v: ['1', '1']}\nimage: a.io/x:{v}\nmanifests: [{image: 'a.io/y:{v}'}]\n",
     "matrix: v: value '1' given twice"),
    (MATRIX, "a matrix document needs platforms and template, or manifests"),
    (MATRIX + "platforms: [linux/amd64]\ntemplate: a.io/x-{arch}:{v}\n"
     "manifests: [{image: 'a.io/y:{v}'}]\n",
     "give platforms and template, or manifests, not both"),
    (MATRIX + "platforms: []\ntemplate: a.io/x-{arch}:{v}\n",
     "platforms: a list needs at least one platform"),
    ("matrix: {v: ['1']}\nimage: 'a.io/x:{v}!'\nmanifests: [{image: 'a.io/y:{v}'}]\n",
     "(v='1'): image: invalid reference format: 'a.io/x:1!': not a valid reference"),
])
def test_matrix_document_errors_advise_for_a_matrix_document(text: str, message: str) -> None:
    """A compact document's error with no more particular advice points at the matrix form
    (docs/plan.md), not at manifest-tool's spec (image, tags, manifests)."""
    err = _error(text)
    sep = " " if message.startswith("(") else ": "
    assert (err.message, err.hint) == (f"plan.yaml: document 1{sep}{message}", MATRIX_HINT)
