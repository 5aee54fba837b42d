"""Image references, parsed and normalised exactly as docker does.

Grammar: the distribution reference grammar (``github.com/distribution/reference``, header of
``reference.go``)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" encoded

Normalisation follows docker's ``ParseNormalizedNamed`` + ``TagNameOnly``: a first component
without ``.`` or ``:`` and other than ``localhost`` is not a registry, so ``hello-world`` is
``docker.io/library/hello-world:latest``; ``index.docker.io`` is ``docker.io``; a reference
with neither tag nor digest gets ``latest``; ``name:tag@digest`` keeps both.

OCI image layouts (image-spec ``image-layout.md``) are named ``oci:PATH[:TAG][@DIGEST]``, as
skopeo names them: the path runs to the first ``:`` (so it cannot hold one), the tag is an
``org.opencontainers.image.ref.name`` of the layout's ``index.json``. Such a reference is a
:class:`Reference` whose ``registry`` is ``oci:`` + the absolute, normalised path and whose
``repository`` is ``''`` (:attr:`Reference.layout`); a registry is never written with a
``/``, so the two cannot be confused. ``oci:PATH`` without a tag has tag ``''``: the
layout's only manifest. Docker Hub's ``oci`` repository is ``docker.io/library/oci:TAG``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass

from manyfest.errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
"""The registry name docker uses for Docker Hub in references."""
DOCKER_HUB_API = "registry-1.docker.io"
"""Docker Hub's registry API endpoint."""
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
"""The key under which docker's config.json stores Docker Hub credentials."""

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII-only
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"

# \Z, not $: $ also matches before a trailing newline.
_REFERENCE_RE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH})(?::(?P<tag>{_TAG}))?"
    rf"(?:@(?P<digest>{_DIGEST}))?\Z"
)
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}\Z")
_PATH_RE = re.compile(rf"^{_PATH}\Z")
_TAG_RE = re.compile(rf"^{_TAG}\Z")
_ANCHORED_HEX64 = re.compile(r"^[a-f0-9]{64}\Z")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_TOTAL_MAX = 255

LAYOUT_PREFIX = "oci:"
"""How an OCI image layout reference starts (``oci:PATH[:TAG][@DIGEST]``)."""
_LAYOUT_REGISTRY = "oci:/"
# image-spec annotations.md, org.opencontainers.image.ref.name.
_REF_NAME_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"^{_REF_NAME_COMPONENT}(?:/{_REF_NAME_COMPONENT})*\Z")
_LAYOUT_DIGEST_RE = re.compile(r"@([a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Fa-f0-9]+)\Z")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference.

    Attributes:
        registry: the registry as written in references, e.g. ``docker.io``,
            ``localhost:5000``, ``[::1]:5000``.
        repository: the path inside the registry, e.g. ``library/alpine``.
        tag: the tag, or ``None`` when the reference names a digest only.
        digest: ``algorithm:encoded``, or ``None``.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: docker's fully qualified name without tag or digest
        (a layout: ``oci:PATH``)."""
        if self.registry.startswith(_LAYOUT_REGISTRY):
            return self.registry
        return f"{self.registry}/{self.repository}"

    @property
    def layout(self) -> str:
        """The absolute path of the OCI image layout this names; '' for a registry."""
        if self.registry.startswith(_LAYOUT_REGISTRY):
            return self.registry[len(LAYOUT_PREFIX):]
        return ""

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the API: the digest if any, else the tag."""
        if self.digest:
            return self.digest
        assert self.tag is not None
        return self.tag

    @property
    def api_host(self) -> str:
        """host[:port] of the registry's HTTP API (Docker Hub: ``registry-1.docker.io``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def credentials_key(self) -> str:
        """The key of this registry in config.json ``auths`` (docker's ``getAuthConfigKey``)."""
        return DOCKER_HUB_AUTH_KEY if self.registry == DOCKER_HUB else self.registry

    def with_digest(self, digest: str) -> Reference:
        """The same repository, named by ``digest`` alone (``name@digest``)."""
        return Reference(self.registry, self.repository, None, digest)

    def with_tag(self, tag: str) -> Reference:
        """The same repository, named by ``tag`` alone (``name:tag``)."""
        return Reference(self.registry, self.repository, tag, None)

    def in_repository(self, other: Reference) -> bool:
        """True when both name the same registry (:func:`same_registry`) and repository."""
        return self.repository == other.repository and same_registry(
            self.registry, other.registry
        )

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise ``text`` as docker's ``normalizeReference`` does.

    Args:
        text: a reference as a user writes it (``alpine:3``, ``localhost:5000/a/b@sha256:...``).
        default_tag: the tag given to a reference with neither tag nor digest; ``None``
            keeps such a reference tagless (an error for callers needing a manifest).

    Returns:
        The normalised :class:`Reference`.

    Raises:
        InvalidReferenceError: the text does not follow the grammar, has upper-case letters in
            the repository, is a bare 64-hex ID, or is longer than 255 characters.
    """
    if not text:
        raise InvalidReferenceError(text, "empty reference")
    if text.startswith(LAYOUT_PREFIX):
        return parse_layout(text)
    if _ANCHORED_HEX64.match(text):
        raise InvalidReferenceError(
            text, "cannot specify 64-byte hexadecimal strings as a repository name"
        )
    domain, remainder = _split_docker_domain(text)
    match = _REFERENCE_RE.match(f"{domain}/{remainder}")
    # The name's domain must be the one split off: 'a_b.c/d' matches the grammar as a path
    # alone, but 'a_b.c' (taken as the domain for its '.') is no host name.
    if match is None or match.group("domain") != domain:
        path_only = re.split(r"[:@]", remainder, maxsplit=1)[0]
        if path_only != path_only.lower() and _PATH_RE.match(path_only.lower()):
            raise InvalidReferenceError(text, "repository name must be lowercase")
        raise InvalidReferenceError(text, "not a valid reference")
    name = match.group("name")
    repository = name[len(domain) + 1 :]
    # distribution/reference >= v0.6.0 (docker 26+): the limit is on the path only.
    if len(repository) > _NAME_TOTAL_MAX:
        raise InvalidReferenceError(text, f"repository name is longer than {_NAME_TOTAL_MAX}")
    tag = match.group("tag")
    digest = match.group("digest")
    if digest is not None:
        _check_digest(text, digest)
    if tag is None and digest is None:
        tag = default_tag
    # Interned: a plan of 10,000 lists names a few registries and repositories 50,000 times.
    return Reference(sys.intern(domain), sys.intern(repository), tag, digest)


def parse_layout(text: str) -> Reference:
    """Parse ``oci:PATH[:TAG][@DIGEST]``: an OCI image layout (see the module docstring).

    The path is made absolute (against the current directory) and normalised; the tag
    follows image-spec's ``org.opencontainers.image.ref.name`` grammar; no tag is ``''``
    (the layout's only manifest).

    Raises:
        InvalidReferenceError: no path, a path holding ``:`` or a NUL, a tag or digest not
            in its grammar.
    """
    body = text[len(LAYOUT_PREFIX):]
    digest: str | None = None
    found = _LAYOUT_DIGEST_RE.search(body)
    if found is not None:
        digest = found.group(1)
        _check_digest(text, digest)
        body = body[: found.start()]
    path, colon, tag = body.partition(":")
    if not path:
        raise InvalidReferenceError(text, "an OCI layout reference needs a path: oci:PATH[:TAG]")
    if "\0" in path:
        raise InvalidReferenceError(text, "a layout path cannot hold a NUL character")
    if colon and not _REF_NAME_RE.match(tag):
        raise InvalidReferenceError(
            text, f"{tag!r} is not a layout tag (org.opencontainers.image.ref.name grammar)"
        )
    try:
        full = os.path.abspath(path)
    except (OSError, ValueError) as exc:  # the current directory is gone, say
        raise InvalidReferenceError(text, f"layout path: {exc}") from None
    if ":" in full:
        raise InvalidReferenceError(text, f"a layout path cannot hold ':' ({full})")
    # As for a registry: ``name@digest`` has no tag; ``oci:PATH`` alone has tag ''.
    return Reference(sys.intern(LAYOUT_PREFIX + full), "", tag if colon or digest is None
                     else None, digest)


def _check_digest(text: str, digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidReferenceError(text, f"unsupported digest algorithm {algorithm!r}")
    if not re.fullmatch(rf"[a-f0-9]{{{length}}}", encoded):
        raise InvalidReferenceError(
            text, f"{algorithm} digests have {length} lower-case hex characters"
        )


def _split_docker_domain(text: str) -> tuple[str, str]:
    """docker's ``splitDockerDomain``: (domain, remainder) with docker.io/library added."""
    first, slash, rest = text.partition("/")
    if (
        not slash
        or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first)
    ):
        domain, remainder = DOCKER_HUB, text
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def parse_registry(text: str) -> str:
    """Validate a registry host[:port] as written (``localhost:5000``, ``[::1]:5000``).

    Raises:
        InvalidReferenceError: not a valid host[:port].
    """
    if not _DOMAIN_RE.match(text):
        raise InvalidReferenceError(text, "not a valid registry host[:port]")
    return DOCKER_HUB if text == "index.docker.io" else text


def valid_tag(tag: str) -> bool:
    """True when ``tag`` matches the distribution tag grammar ``[\\w][\\w.-]{0,127}``."""
    return _TAG_RE.match(tag) is not None


def host_of(registry: str) -> str:
    """The host part of a registry host[:port], without brackets (``[::1]:5000`` → ``::1``)."""
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def _port(registry: str) -> str:
    """The port written in a registry host[:port] ('' when none)."""
    rest = registry[registry.index("]") + 1 :] if registry.startswith("[") else registry
    return rest.rpartition(":")[2] if ":" in rest else ""


def registry_key(registry: str) -> str:
    """The registry's identity: ``host`` and ``host:80`` are one registry.

    The rule (README "Registries, TLS and credentials"): a registry written without a port
    and the same host with ``:80`` are the same registry for every check (sources on the
    target's registry, tags written twice, children already in the repository) and for
    credentials, looked up under the spelling used, then the other. The transport talks to
    each spelling at its own address (``https://host`` is port 443; with ``--insecure`` a
    refused or failed TLS connection falls back to ``http://host``, port 80).
    """
    return registry[:-3] if _port(registry) == "80" else registry


def same_registry(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name one registry (:func:`registry_key`)."""
    return a == b or registry_key(a) == registry_key(b)


def registry_aliases(registry: str) -> list[str]:
    """The registry as written, then its other spelling (``host`` and ``host:80``)."""
    if registry == DOCKER_HUB:
        return [registry]
    port = _port(registry)
    if port == "80":
        return [registry, registry[:-3]]
    if not port:
        return [registry, f"{registry}:80"]
    return [registry]


def is_loopback(registry: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (docker and crane treat these as insecure)."""
    host = host_of(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def filesafe(ref: Reference | str) -> str:
    """docker's ``makeFilesafeName``: ``:`` → ``-`` and ``/`` → ``_`` (store file names)."""
    return str(ref).replace(":", "-").replace("/", "_")


_LAYOUT_ESCAPES = str.maketrans({"%": "%25", "_": "%5F", "-": "%2D"})


def store_name(ref: Reference) -> str:
    """The local store's file name for ``ref`` (a list's directory, an entry's file).

    A registry reference: docker's :func:`filesafe` as it is (docker reads and writes the
    same store, so its names stay docker's, collisions such as ``reg/a_b:1`` and
    ``reg/a/b:1`` included). An OCI layout (``oci:PATH[:TAG][@DIGEST]``, which docker
    cannot name): ``%``, ``_`` and ``-`` escaped first (``%25``, ``%5F``, ``%2D``), then
    :func:`filesafe`, so the name is injective and reads back (:func:`layout_of_store_name`):
    ``oci:/tmp/qa_col:t`` is ``oci-_tmp_qa%5Fcol-t``, ``oci:/tmp/qa/col:t`` is
    ``oci-_tmp_qa_col-t``. A layout path without ``_``, ``-`` or ``%`` keeps the name it had.
    """
    text = str(ref)
    if ref.layout:
        text = text.translate(_LAYOUT_ESCAPES)
    return filesafe(text)


def layout_of_store_name(name: str) -> str:
    """The ``oci:`` reference a layout's :func:`store_name` was made from; '' when ``name``
    is not one (it does not start ``oci-_``)."""
    if not name.startswith("oci-_"):
        return ""
    text = name.replace("-", ":").replace("_", "/")
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)
