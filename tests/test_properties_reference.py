"""Property-based tests of manyfest.reference: docker's reference grammar and normalisation.

References are generated from the distribution/reference grammar (header of
``manyfest.reference``) and checked against an independent model of docker's
``ParseNormalizedNamed`` + ``TagNameOnly``; arbitrary and grammar-flavoured text checks that
``parse`` fails only with ``InvalidReferenceError`` and that what it accepts is normalised
(``parse(str(ref)) == ref``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from manyfest import reference
from manyfest.errors import InvalidReferenceError
from manyfest.reference import Reference

# --- the grammar, as strategies ------------------------------------------------------------

_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_DOMAIN_CHARS = _LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WORD = _DOMAIN_CHARS + "_"

alnum = st.text(_LOWER_ALNUM, min_size=1, max_size=8)
separator = st.sampled_from(["_", ".", "__", "-", "--", "---"])
path_component = st.builds(
    lambda head, rest: head + "".join(sep + run for sep, run in rest),
    alnum,
    st.lists(st.tuples(separator, alnum), max_size=3),
)
# A long single component, to sit either side of the 255-character limit on the path.
long_component = st.integers(min_value=240, max_value=262).map(lambda n: "a" * n)
path = st.lists(
    st.one_of(path_component, path_component, path_component, long_component),
    min_size=1,
    max_size=4,
).map("/".join)

domain_label = st.one_of(
    st.text(_DOMAIN_CHARS, min_size=1, max_size=1),
    st.builds(
        lambda a, mid, b: a + mid + b,
        st.text(_DOMAIN_CHARS, min_size=1, max_size=1),
        st.text(_DOMAIN_CHARS + "-", max_size=10),
        st.text(_DOMAIN_CHARS, min_size=1, max_size=1),
    ),
)
hostname = st.lists(domain_label, min_size=1, max_size=4).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.one_of(
    st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n)),
    st.sampled_from([ipaddress.IPv6Address("::1"), ipaddress.IPv6Address("::")]),
).flatmap(lambda a: st.sampled_from([a.compressed, a.exploded, a.compressed.upper()]))
port = st.integers(0, 99999).map(str)


def _is_domain(first: str) -> bool:
    """docker's splitDockerDomain test: is the first component a registry?"""
    return any(c in first for c in ".:") or first == "localhost" or first.lower() != first


host = st.one_of(
    hostname.filter(_is_domain),  # a dotless lowercase label would be a path component
    ipv4,
    ipv6.map(lambda a: f"[{a}]"),
    st.sampled_from(["localhost", "docker.io", "index.docker.io", "registry-1.docker.io"]),
)
domain = st.one_of(host, st.builds(lambda h, p: f"{h}:{p}", host, port))
tag = st.builds(
    lambda first, rest: first + rest,
    st.text(_WORD, min_size=1, max_size=1),
    st.one_of(
        st.text(_WORD + ".-", max_size=20), st.text(_WORD + ".-", min_size=127, max_size=127)
    ),
)
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
digest = st.sampled_from(sorted(_HEX_LENGTHS)).flatmap(
    lambda algorithm: st.binary(
        min_size=_HEX_LENGTHS[algorithm] // 2, max_size=_HEX_LENGTHS[algorithm] // 2
    ).map(lambda b: f"{algorithm}:{b.hex()}")
)


@dataclass(frozen=True)
class Written:
    """A reference as generated: its parts and the text a user would write."""

    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def text(self) -> str:
        text = self.path if self.domain is None else f"{self.domain}/{self.path}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


written = st.builds(
    Written,
    st.one_of(st.none(), domain),
    path,
    st.one_of(st.none(), tag),
    st.one_of(st.none(), digest),
)


_HOSTNAME = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
)


def expected(w: Written, default_tag: str | None = "latest") -> Reference | str:
    """docker's normalisation of ``w``, or the reason docker refuses it."""
    if w.domain is None:
        first, slash, rest = w.path.partition("/")
        if slash and _is_domain(first):
            # Only '.' can make a path component a domain; it must then be a host name.
            if not _HOSTNAME.fullmatch(first):
                return "not a valid reference"
            registry, repository = first, rest
        else:
            registry, repository = "docker.io", w.path
    else:
        registry, repository = w.domain, w.path
    if registry == "index.docker.io":
        registry = "docker.io"
    if registry == "docker.io" and "/" not in repository:
        repository = f"library/{repository}"
    if len(repository) > 255:
        return "repository name is longer than 255"
    tag_ = w.tag if w.tag is not None or w.digest is not None else default_tag
    return Reference(registry, repository, tag_, w.digest)


def check_normalised(ref: Reference, default_tag: str | None = "latest") -> None:
    """Invariants of every reference ``parse`` returns."""
    assert reference.parse(str(ref), default_tag=default_tag) == ref
    assert reference.parse_registry(ref.registry) == ref.registry
    assert ref.registry != "index.docker.io"
    assert ref.repository == ref.repository.lower()
    assert re.fullmatch(r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[_.]|__|-+)"
                        r"[a-z0-9]+)*)*", ref.repository)
    assert len(ref.repository) <= 255
    if ref.registry == "docker.io":
        assert "/" in ref.repository
    if ref.tag is not None:
        assert reference.valid_tag(ref.tag)
    if ref.digest is not None:
        algorithm, _, encoded = ref.digest.partition(":")
        assert re.fullmatch(f"[a-f0-9]{{{_HEX_LENGTHS[algorithm]}}}", encoded)
    assert ref.tag is not None or ref.digest is not None or default_tag is None
    safe = reference.filesafe(ref)
    assert ":" not in safe
    assert "/" not in safe
    assert reference.filesafe(str(ref)) == safe


def _parse_or_error(
    text: str, default_tag: str | None = "latest"
) -> Reference | InvalidReferenceError:
    """``parse(text)``, or the InvalidReferenceError it raised (any other error escapes)."""
    try:
        return reference.parse(text, default_tag=default_tag)
    except InvalidReferenceError as exc:
        return exc


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(written)
def test_generated_references_normalise_like_docker(w: Written) -> None:
    want = expected(w)
    if isinstance(want, str):
        with pytest.raises(InvalidReferenceError) as info:
            reference.parse(w.text)
        assert info.value.reason == want
        return
    ref = reference.parse(w.text)
    assert ref == want
    check_normalised(ref)
    # name:tag@digest keeps both; the API names the digest when there is one.
    assert ref.reference == (w.digest or ref.tag)


@settings(max_examples=100, deadline=None)
@given(written)
def test_default_tag_none_keeps_tagless_references_tagless(w: Written) -> None:
    want = expected(w, default_tag=None)
    assume(isinstance(want, Reference))
    ref = reference.parse(w.text, default_tag=None)
    assert ref == want
    check_normalised(ref, default_tag=None)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), domain), path, st.data())
def test_upper_case_in_the_path_is_refused(
    domain_: str | None, path_: str, data: st.DataObject
) -> None:
    # Upper-case one letter of the path: docker's "repository name must be lowercase".
    letters = [i for i, c in enumerate(path_) if c.isalpha()]
    assume(letters)
    i = data.draw(st.sampled_from(letters))
    upper = path_[:i] + path_[i].upper() + path_[i + 1 :]
    w = Written(domain_, upper, None, None)
    first = upper.partition("/")[0]
    assume(domain_ is not None or "/" not in upper or not _is_domain(first))
    with pytest.raises(InvalidReferenceError):
        reference.parse(w.text)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_bare_64_hex_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        reference.parse(data.hex())
    assert "64-byte hexadecimal" in info.value.reason


# Text built from the grammar's own characters hits the edges far more often than text in
# general; fully arbitrary text checks nothing but InvalidReferenceError ever escapes.
_GRAMMAR_CHARS = "abAZ09_.-:/@[]"
grammar_text = st.one_of(
    st.text(_GRAMMAR_CHARS, max_size=40),
    st.lists(
        st.one_of(
            st.sampled_from(["/", ":", "@", ".", "-", "_", "__", "[", "]", "::", "sha256:"]),
            alnum,
            domain,
            tag,
            digest,
        ),
        max_size=8,
    ).map("".join),
    written.map(lambda w: w.text).flatmap(
        lambda text: st.tuples(st.integers(0, len(text)), st.text(_GRAMMAR_CHARS, max_size=3)).map(
            lambda t: text[: t[0]] + t[1] + text[t[0] :]
        )
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), grammar_text))
@example("a_b.c/d")  # a path component that is no hostname was taken as the registry
@example("a_b.c/d:1")
@example("x__y.z/app")
@example("localhost:/a")
def test_parse_accepts_only_normalised_references(text: str) -> None:
    ref = _parse_or_error(text)
    if isinstance(ref, InvalidReferenceError):
        assert ref.text == text
        assert ref.exit_code == 2
        assert "\n" not in ref.one_line()
    else:
        check_normalised(ref)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), grammar_text), st.one_of(st.none(), st.just("latest")))
def test_parse_registry_and_valid_tag_never_raise_unexpectedly(
    text: str, default_tag: str | None
) -> None:
    try:
        registry = reference.parse_registry(text)
    except InvalidReferenceError:
        pass
    else:
        assert registry == ("docker.io" if text == "index.docker.io" else text)
        # host_of and is_loopback take any registry parse_registry accepts.
        reference.is_loopback(registry)
        assert reference.host_of(registry)
    assert isinstance(reference.valid_tag(text), bool)
    ref = _parse_or_error(text, default_tag)
    if isinstance(ref, Reference):
        check_normalised(ref, default_tag)


# --- regression tests (minimal examples the properties found) -------------------------------


@pytest.mark.parametrize("text", ["a_b.c/d", "a_b.c/d:1", "x__y.z/app", "a.b_c/d/e"])
def test_first_component_that_is_no_hostname_is_refused(text: str) -> None:
    # 'a_b.c' contains '.', so docker's splitDockerDomain takes it as the domain; it is no
    # host name ('_' is not allowed), so the name does not follow the grammar. manyfest used
    # to accept it as registry 'a_b.c' (the whole 'a_b.c/d' matched as a path).
    with pytest.raises(InvalidReferenceError) as info:
        reference.parse(text)
    assert info.value.reason == "not a valid reference"
