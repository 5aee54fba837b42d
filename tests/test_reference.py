"""Unit tests for manyfest.reference: docker's ParseNormalizedNamed + TagNameOnly."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from manyfest import reference
from manyfest.errors import InvalidReferenceError
from manyfest.reference import Reference

HEX64 = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX64}"


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("hello-world", "docker.io", "library/hello-world", "latest", None),
        ("alpine:3", "docker.io", "library/alpine", "3", None),
        ("index.docker.io/foo", "docker.io", "library/foo", "latest", None),
        ("index.docker.io/user/repo:1", "docker.io", "user/repo", "1", None),
        ("docker.io/foo", "docker.io", "library/foo", "latest", None),
        ("docker.io/user/repo", "docker.io", "user/repo", "latest", None),
        ("user/repo", "docker.io", "user/repo", "latest", None),
        ("library/foo/bar", "docker.io", "library/foo/bar", "latest", None),
        ("localhost/foo", "localhost", "foo", "latest", None),
        ("localhost:5000/a/b:1", "localhost:5000", "a/b", "1", None),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
        ("[::1]:5000/x:t", "[::1]:5000", "x", "t", None),
        ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000",
         "library/debian", "latest", None),
        ("example.com/a", "example.com", "a", "latest", None),
        ("example.com:8000/private/moonbase", "example.com:8000", "private/moonbase",
         "latest", None),
        ("test-com:8080/foo", "test-com:8080", "foo", "latest", None),
        ("test_com/foo", "docker.io", "test_com/foo", "latest", None),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo", "latest", None),
        # docker (distribution/reference TestParseRepositoryInfo): an upper-case first
        # component is taken as a domain, so these are valid with domain Foo / FOO.
        ("Foo/bar", "Foo", "bar", "latest", None),
        ("FOO/bar", "FOO", "bar", "latest", None),
        ("192.168.0.1", "docker.io", "library/192.168.0.1", "latest", None),
        ("docker---rules/dock__er", "docker.io", "docker---rules/dock__er", "latest", None),
        ("a" * 63 + "g", "docker.io", "library/" + "a" * 63 + "g", "latest", None),
        (f"docker.io/{HEX64}", "docker.io", f"library/{HEX64}", "latest", None),
        (f"name@{DIGEST}", "docker.io", "library/name", None, DIGEST),
        (f"name:tag@{DIGEST}", "docker.io", "library/name", "tag", DIGEST),
        (f"localhost:5000/a/b@{DIGEST}", "localhost:5000", "a/b", None, DIGEST),
        ("a:" + "t" * 128, "docker.io", "library/a", "t" * 128, None),
        ("a:_x.Y-1", "docker.io", "library/a", "_x.Y-1", None),
    ],
)
def test_parse_normalises_like_docker(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    assert reference.parse(text) == Reference(registry, repository, tag, digest)


def test_hello_world_string_form() -> None:
    assert str(reference.parse("hello-world")) == "docker.io/library/hello-world:latest"


def test_alpine_properties() -> None:
    ref = reference.parse("alpine:3")
    assert str(ref) == "docker.io/library/alpine:3"
    assert ref.name == "docker.io/library/alpine"
    assert ref.reference == "3"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.credentials_key == "https://index.docker.io/v1/"


def test_non_hub_properties() -> None:
    ref = reference.parse("localhost:5000/a/b:1")
    assert ref.api_host == "localhost:5000"
    assert ref.credentials_key == "localhost:5000"
    assert ref.name == "localhost:5000/a/b"
    assert str(ref) == "localhost:5000/a/b:1"


def test_tag_and_digest_kept_reference_is_digest() -> None:
    ref = reference.parse(f"name:tag@{DIGEST}")
    assert ref.tag == "tag"
    assert ref.digest == DIGEST
    assert ref.reference == DIGEST
    assert str(ref) == f"docker.io/library/name:tag@{DIGEST}"


def test_digest_only_gets_no_tag() -> None:
    ref = reference.parse(f"name@{DIGEST}")
    assert ref.tag is None
    assert ref.reference == DIGEST
    assert str(ref) == f"docker.io/library/name@{DIGEST}"


def test_default_tag_none_keeps_reference_tagless() -> None:
    ref = reference.parse("example.com/a", default_tag=None)
    assert ref == Reference("example.com", "a", None, None)
    assert str(ref) == "example.com/a"


def test_with_digest_with_tag_in_repository() -> None:
    ref = reference.parse("example.com/a:1")
    assert ref.with_digest(DIGEST) == Reference("example.com", "a", None, DIGEST)
    assert ref.with_tag("2") == Reference("example.com", "a", "2", None)
    assert ref.in_repository(reference.parse(f"example.com/a@{DIGEST}"))
    assert not ref.in_repository(reference.parse("example.com/b:1"))
    assert not ref.in_repository(reference.parse("example.org/a:1"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty reference"),
        ("Alpine", "repository name must be lowercase"),
        ("docker/Docker", "repository name must be lowercase"),
        ("example.com/Foo", "repository name must be lowercase"),
        ("docker.io/docker/Docker:1", "repository name must be lowercase"),
        (HEX64, "cannot specify 64-byte hexadecimal strings as a repository name"),
        ("a:-x", "not a valid reference"),
        ("a:.x", "not a valid reference"),
        ("a:" + "t" * 129, "not a valid reference"),
        ("a@sha256:abc", "not a valid reference"),
        (f"a@sha256:{HEX64[:40]}", "sha256 digests have 64 lower-case hex characters"),
        (f"a@sha256:{HEX64.upper()}", "sha256 digests have 64 lower-case hex characters"),
        (f"a@sha512:{HEX64}", "sha512 digests have 128 lower-case hex characters"),
        ("a//b", "not a valid reference"),
        ("docker///docker", "not a valid reference"),
        ("example.com//b", "not a valid reference"),
        ("a/", "not a valid reference"),
        ("docker/", "not a valid reference"),
        ("-docker", "not a valid reference"),
        ("-docker/docker", "not a valid reference"),
        ("docker-/docker", "not a valid reference"),
        ("____/____", "not a valid reference"),
        ("dock..er/docker", "not a valid reference"),
        ("https://github.com/docker/docker", "not a valid reference"),
        ("[fc00::1]", "not a valid reference"),
        ("[fc00::1]:5000", "not a valid reference"),
        ("fc00::1:5000/debian", "not a valid reference"),
        ("[fe80::1%eth0]:5000/debian", "not a valid reference"),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", "not a valid reference"),
        ("a b", "not a valid reference"),
        ("a" * 256, "repository name is longer than 255"),
        ("example.com/" + "a" * 256, "repository name is longer than 255"),
    ],
)
def test_invalid_references(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        reference.parse(text)
    assert info.value.reason == reason
    assert info.value.text == text
    assert info.value.exit_code == 2
    assert str(info.value) == f"invalid reference format: {text!r}: {reason}"


def test_name_of_exactly_255_path_characters_is_valid() -> None:
    # The whole name is 255 characters: at the limit, accepted whether or not the domain is
    # counted (distribution/reference before and after v0.6.0).
    text = "localhost/" + "a" * 245
    assert reference.parse(text) == Reference("localhost", "a" * 245, "latest", None)


def test_length_limit_applies_to_the_path_only() -> None:
    # docker 28 vendors distribution/reference v0.6.0 (PR #9 "Exclude domain from name length
    # check"): only len(path) > 255 is an error. Path here is 250 characters.
    text = "registry.example.com:5000/" + "a" * 250
    assert reference.parse(text) == Reference(
        "registry.example.com:5000", "a" * 250, "latest", None
    )


@pytest.mark.parametrize("text", ["alpine:é", "alpine:版本", "alpine:1٣"])
def test_non_ascii_tag_refused(text: str) -> None:
    # Go's regexp \w is [0-9A-Za-z_]; docker refuses these tags.
    with pytest.raises(InvalidReferenceError):
        reference.parse(text)


@pytest.mark.parametrize("text", ["alpine:3\n", "alpine\n", "example.com/a\n"])
def test_trailing_newline_refused(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        reference.parse(text)


@pytest.mark.parametrize(
    "text", ["a@md5:" + "0" * 32, "a@sha384:" + "0" * 40, "a@foo+b64:" + "0" * 32]
)
def test_unsupported_or_malformed_digest_algorithm_refused(text: str) -> None:
    # go-digest's Validate: only registered algorithms (sha256, sha384, sha512), each with its
    # exact hex length; docker's ParseNormalizedNamed returns an error for anything else.
    with pytest.raises(InvalidReferenceError):
        reference.parse(text)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("alpine:3", "docker.io_library_alpine-3"),
        ("127.0.0.1:5000/app:1", "127.0.0.1-5000_app-1"),
        ("hello-world", "docker.io_library_hello-world-latest"),
        ("localhost:5000/a/b:1", "localhost-5000_a_b-1"),
        (f"alpine@{DIGEST}", f"docker.io_library_alpine@sha256-{HEX64}"),
        (f"alpine:3@{DIGEST}", f"docker.io_library_alpine-3@sha256-{HEX64}"),
        ("[::1]:5000/x:t", "[--1]-5000_x-t"),
    ],
)
def test_filesafe(ref: str, expected: str) -> None:
    assert reference.filesafe(reference.parse(ref)) == expected
    assert reference.filesafe(str(reference.parse(ref))) == expected


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.8.9.1", True),
        ("127.0.0.1", True),
        ("localhost", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("example.com", False),
        ("example.com:5000", False),
        ("10.0.0.1", False),
        ("10.0.0.1:5000", False),
        ("128.0.0.1", False),
        ("localhost.example.com", False),
        ("[fc00::1]:5000", False),
        ("docker.io", False),
    ],
)
def test_is_loopback(registry: str, loopback: bool) -> None:
    assert reference.is_loopback(registry) is loopback


@pytest.mark.parametrize(
    ("registry", "host"),
    [("[::1]:5000", "::1"), ("localhost:5000", "localhost"), ("example.com", "example.com")],
)
def test_host_of(registry: str, host: str) -> None:
    assert reference.host_of(registry) == host


def test_parse_registry() -> None:
    assert reference.parse_registry("localhost:5000") == "localhost:5000"
    assert reference.parse_registry("[::1]:5000") == "[::1]:5000"
    assert reference.parse_registry("index.docker.io") == "docker.io"
    for bad in ("", "a/b", "-a.com", "a.com:port", "https://a.com"):
        with pytest.raises(InvalidReferenceError):
            reference.parse_registry(bad)


@pytest.mark.parametrize(
    ("tag", "valid"),
    [("1.10", True), ("010", True), ("_a", True), ("A-b.C", True), ("t" * 128, True),
     ("t" * 129, False), ("-x", False), (".x", False), ("", False), ("a:b", False),
     ("a/b", False)],
)
def test_valid_tag(tag: str, valid: bool) -> None:
    assert reference.valid_tag(tag) is valid


# --- property: parse(str(ref)) == ref -------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_alnum = st.text(_ALNUM, min_size=1, max_size=6)
_separator = st.sampled_from(["_", ".", "__", "-", "--", "---"])
_component = st.tuples(_alnum, st.lists(st.tuples(_separator, _alnum), max_size=3)).map(
    lambda t: t[0] + "".join(sep + run for sep, run in t[1])
)
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
_port = st.integers(min_value=1, max_value=65535).map(str)
_domain = st.one_of(
    st.just("localhost"),
    _port.map(lambda p: f"localhost:{p}"),
    st.just("example.com"),
    _port.map(lambda p: f"registry.example.com:{p}"),
    st.tuples(st.integers(0, 255), st.integers(0, 255), _port).map(
        lambda t: f"127.{t[0]}.{t[1]}.1:{t[2]}"
    ),
    _port.map(lambda p: f"[::1]:{p}"),
    st.just("Foo"),
    st.just("docker.io"),
)
_WORD = "ABCXYZabcxyz0189_"
_tag = st.tuples(st.text(_WORD, min_size=1, max_size=1), st.text(_WORD + ".-", max_size=30)).map(
    "".join
)
_digest = st.binary(min_size=32, max_size=32).map(lambda b: f"sha256:{b.hex()}")


@settings(max_examples=200, deadline=None)
@given(
    domain=st.one_of(st.none(), _domain),
    path=_path,
    tag=st.one_of(st.none(), _tag),
    digest=st.one_of(st.none(), _digest),
)
def test_round_trip(domain: str | None, path: str, tag: str | None, digest: str | None) -> None:
    first = path.split("/", 1)[0]
    # Without a domain, a first component with "." (or "localhost") would be read as one
    # (docker's rule), and "0_0.0" is no valid host: that is the parser's refusal, tested
    # in test_properties_reference.py.
    assume(domain is not None or "/" not in path or ("." not in first and first != "localhost"))
    text = path if domain is None else f"{domain}/{path}"
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    ref = reference.parse(text)
    assert reference.parse(str(ref)) == ref
    assert ref.tag == (tag if tag is not None or digest is not None else "latest")
    assert ref.digest == digest
    if domain is not None:
        assert ref.registry == domain
        if domain == "docker.io" and "/" not in path:
            assert ref.repository == f"library/{path}"
        else:
            assert ref.repository == path


@pytest.mark.parametrize(("ref", "expected"), [
    ("127.0.0.1:5000/a_b:1", "127.0.0.1-5000_a_b-1"),  # registries: docker's names
    ("localhost:5000/a/b:1", "localhost-5000_a_b-1"),
    ("oci:/tmp/qa_col:t", "oci-_tmp_qa%5Fcol-t"),
    ("oci:/tmp/qa/col:t", "oci-_tmp_qa_col-t"),
    ("oci:/tmp/x-y:t", "oci-_tmp_x%2Dy-t"),
    ("oci:/tmp/x:y-t", "oci-_tmp_x-y%2Dt"),
    ("oci:/tmp/p%5F:t", "oci-_tmp_p%255F-t"),
    ("oci:/tmp/p_:t", "oci-_tmp_p%5F-t"),
    ("oci:/srv/x:v1/a+b:c", "oci-_srv_x-v1_a+b-c"),
    (f"oci:/srv/x@{DIGEST}", f"oci-_srv_x@sha256-{HEX64}"),
])
def test_store_name_is_dockers_for_registries_and_injective_for_layouts(
        ref: str, expected: str) -> None:
    parsed = reference.parse(ref)
    assert reference.store_name(parsed) == expected
    if parsed.layout:
        assert reference.layout_of_store_name(expected) == str(parsed)
    else:
        assert reference.store_name(parsed) == reference.filesafe(parsed)
        assert reference.layout_of_store_name(expected) == ""
