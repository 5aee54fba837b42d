"""The one exception hierarchy of manyfest.

Every error carries ``exit_code`` (the CLI's exit status) and ``hint`` (what the user can do
about it). ``str(err)`` is one line: what failed, which reference, what the registry said.
The CLI prints ``f"{err}; {err.hint}"`` on stderr.

Tree::

    ManyfestError                   exit 1
    ├── UsageError                  exit 2 (bad input, before any request)
    │   ├── InvalidReferenceError
    │   ├── PlanError
    │   └── PlatformError
    ├── StoreError                  local manifest-list store
    │   └── NoSuchManifestError     docker's "No such manifest: <ref>"
    ├── CredentialsError            config.json / credential helper problems
    ├── LayoutError                 an OCI image layout missing, not one, or unwritable
    ├── TransportError              connection, TLS, timeout (retryable)
    │   └── CertificateError        TLS verification failed
    ├── RegistryError               an HTTP answer with OCI error details
    │   ├── AuthenticationError     401 after authenticating
    │   ├── AuthorizationError      403 / DENIED
    │   ├── NotFoundError           404 / *_UNKNOWN
    │   ├── RateLimitedError        429 / 503 / TOOMANYREQUESTS past the retry deadline
    │   ├── ManifestRejectedError   400 MANIFEST_INVALID / BLOB_UNKNOWN, 413, 415
    │   └── ImmutableTagError       a tag holding another digest the registry will not overwrite
    ├── DigestMismatchError         content does not match the digest that named it
    ├── UnsupportedMediaTypeError
    │   └── InvalidManifestError    a body that is not the JSON its media type requires
    ├── NoMatchingPlatformError     inspect --platform: no entry (or not the image) matches
    ├── VerificationError           --verify found a tag or child not as published
    ├── NotPublishedError           a list left alone: the run stopped (--fail-fast, a signal)
    ├── MissingPlatformsError       a list lacks required platforms, or --platform left no image
    ├── ExistingTagError            --existing fail: a tag holds another digest (nothing written)
    └── PublishFailed               a bulk publish finished with failed lists (exit 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ManyfestError(Exception):
    """Base of every manyfest error.

    Attributes:
        exit_code: process exit status the CLI uses for this error.
        hint: one short sentence telling the user what to do.
    """

    exit_code: int = 1
    default_hint: str = "re-run with --debug for details"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The single line the CLI prints: ``<what failed>; <what to do>``."""
        text = " ".join(self.message.split())
        return f"{text}; {self.hint}" if self.hint else text


class UsageError(ManyfestError):
    """Invalid input given by the user (exit 2); raised before any network request."""

    exit_code = 2
    default_hint = "check the command line (see --help)"


class InvalidReferenceError(UsageError):
    """An image reference does not follow the distribution reference grammar."""

    default_hint = "use the form [registry[:port]/]repository[:tag][@sha256:<64 hex>]"

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid reference format: {text!r}: {reason}")
        self.text = text
        self.reason = reason


class PlanError(UsageError):
    """A publish plan file is malformed (names the document and the field)."""

    default_hint = "fix the plan file (manifest-tool's YAML spec: image, tags, manifests)"


class PlatformError(UsageError):
    """An os/architecture/variant combination is not valid."""

    default_hint = "use a valid os/arch/variant, e.g. linux/arm/v7 or linux/arm64/v8"


class StoreError(ManyfestError):
    """A problem with the local manifest-list store (``$DOCKER_CONFIG/manifests``)."""

    default_hint = "check the files under $DOCKER_CONFIG/manifests"


class NoSuchManifestError(StoreError):
    """The named list or entry is not in the local store (docker: ``No such manifest``)."""

    default_hint = "create it first with `manyfest create LIST IMAGE...`"


class CredentialsError(ManyfestError):
    """Credentials could not be read from config.json or a credential helper."""

    default_hint = "check $DOCKER_CONFIG/config.json and its credential helpers"


class LayoutError(ManyfestError):
    """An OCI image layout (``oci:PATH``) cannot be used: the directory is missing or is
    not a layout (no ``oci-layout`` file, another ``imageLayoutVersion``, an ``index.json``
    that is not an index), or it cannot be read or written. The message names the path."""

    default_hint = "check the path: an OCI image layout holds oci-layout, index.json and blobs/"


class TransportError(ManyfestError):
    """The registry could not be reached: connection refused, timeout, TLS failure.

    ``refused``: the connection was refused (nothing listens on the port).
    """

    default_hint = "check that the registry is up and reachable"
    retryable = True
    refused = False


class CertificateError(TransportError):
    """TLS certificate verification failed."""

    default_hint = (
        "add the registry's CA to /etc/docker/certs.d/<host:port>/ca.crt, "
        "or use --insecure to skip verification"
    )
    retryable = False


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One entry of the OCI error body ``{"errors": [{"code", "message", "detail"}]}``.

    Attributes:
        code: the error code (``MANIFEST_INVALID``), or the first line of a non-JSON body.
        message: the message ('' when none).
        detail: the ``detail`` value as compact JSON text, or the plain string ('' when none).
    """

    code: str
    message: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}" if self.message else self.code
        return f"{text} (detail: {self.detail})" if self.detail else text


_STATUS_HINTS = {
    400: "the registry refused the request as invalid; this will not change by retrying",
    405: "the registry does not allow this method here (a read-only mirror or a pull-through "
    "cache?)",
    413: "the registry refused the body as too large",
    415: "the registry does not accept this media type; this will not change by retrying",
}


def status_hint(status: int) -> str:
    """Advice that fits an HTTP error status (5xx: retry later; 4xx: permanent)."""
    if status in _STATUS_HINTS:
        return _STATUS_HINTS[status]
    if status >= 500:
        return "the registry failed; retry later, and if it persists check its status and logs"
    return "check the reference and your access to the repository"


class RegistryError(ManyfestError):
    """The registry answered a request with an error status.

    Attributes:
        status: HTTP status code.
        method: HTTP method of the failed request.
        url: request URL (never carries credentials).
        errors: the OCI error details parsed from the body (distribution-spec "Error Codes").
    """

    default_hint = ""

    def __init__(
        self,
        what: str,
        *,
        status: int,
        method: str,
        url: str,
        errors: Sequence[ErrorDetail] = (),
        hint: str | None = None,
    ) -> None:
        said = "; ".join(str(e) for e in errors)
        message = f"{what}: registry answered {status}" + (f" ({said})" if said else "")
        if hint is None and not type(self).default_hint:
            hint = status_hint(status)
        super().__init__(message, hint=hint)
        self.status = status
        self.method = method
        self.url = url
        self.errors = tuple(errors)

    @property
    def codes(self) -> set[str]:
        """The OCI error codes of the answer, e.g. ``{"MANIFEST_UNKNOWN"}``."""
        return {e.code for e in self.errors}


class AuthenticationError(RegistryError):
    """401 after credentials or a token were sent."""

    default_hint = "log in (manyfest login <registry>) or check the stored credentials"


class AuthorizationError(RegistryError):
    """403, or a token that lacks the scope asked for."""

    default_hint = "check that your account may push to (or pull from) this repository"


class NotFoundError(RegistryError):
    """404: the repository, manifest or blob does not exist."""

    default_hint = "check the reference: push the image first, or fix its name or tag"


class RateLimitedError(RegistryError):
    """429 / 503 / TOOMANYREQUESTS that went on past the retry deadline.

    ``retry_after`` is the wait the registry last asked for, in seconds.
    """

    default_hint = (
        "the registry kept throttling past the retry deadline: raise --retry-deadline, or "
        "publish when it is less busy"
    )
    retry_after: float | None = None


class ManifestRejectedError(RegistryError):
    """The registry refused a manifest (400 MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN; 413)."""

    default_hint = "check that every child and blob the manifest names is in the target repository"


IMMUTABLE_HINT = (
    "the repository has immutable tags: publish under a new tag, or pass --existing skip to "
    "leave the tags that exist as they are (--existing fail checks them before any write)"
)
"""The advice after a registry refused to move a tag that exists (immutable tags)."""

OVERWRITE_HINT = (
    "the registry refuses to overwrite a tag that exists (immutable tags, or an account "
    "without overwrite permission): publish under a new tag, or pass --existing skip to "
    "leave the tags that exist as they are"
)
"""The advice when the refusal names no immutability (a 403 or 409 on a tag that exists:
Artifactory without the Delete/Overwrite permission, Docker Hub's immutable tags)."""


class ImmutableTagError(RegistryError):
    """The registry refused to move a tag that holds another digest: immutable tags
    (Amazon ECR ``imageTagMutability: IMMUTABLE``: 400 ``TAG_INVALID``; Harbor's immutability
    rules: 412 ``PRECONDITION``; Artifact Registry, Quay, Artifactory without overwrite
    permission). The registry's whole answer (status, each error's code, message and
    detail) is kept, as in every :class:`RegistryError`.

    Attributes:
        existing: ``{tag: digest it holds}`` for the tag refused (left as it was).
    """

    default_hint = IMMUTABLE_HINT

    def __init__(self, what: str, *, status: int, method: str, url: str,
                 errors: Sequence[ErrorDetail] = (), hint: str | None = None,
                 existing: dict[str, str] | None = None) -> None:
        super().__init__(what, status=status, method=method, url=url, errors=errors,
                         hint=hint)
        self.existing = dict(existing or {})


class ExistingTagError(ManyfestError):
    """``--existing fail``: a tag of the list holds another digest; the list fails before
    anything is written.

    Attributes:
        existing: ``{tag: digest it holds}`` for each such tag.
    """

    default_hint = (
        "pass --existing skip to leave such tags as they are and move the others, or "
        "--existing overwrite to move them (refused by a registry with immutable tags)"
    )

    def __init__(self, message: str, *, existing: dict[str, str],
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.existing = dict(existing)


class DigestMismatchError(ManyfestError):
    """Content does not match the digest that named it."""

    default_hint = "the registry served corrupt or changed content; retry, then report it"


class UnsupportedMediaTypeError(ManyfestError):
    """A manifest has a media type manyfest cannot use here."""

    default_hint = "use a Docker schema2 or OCI image manifest or index"


class InvalidManifestError(UnsupportedMediaTypeError):
    """A manifest body is not JSON, or not the shape its media type requires (a ``config``
    that is a string, a descriptor without ``digest``, nesting too deep to decode)."""

    default_hint = "the manifest is malformed: re-push the image, or report it to its builder"


class NoMatchingPlatformError(ManyfestError):
    """``inspect --platform``: no entry of the list, or not the image, is that platform."""

    default_hint = "ask for one of the platforms it has"


class VerificationError(ManyfestError):
    """``--verify`` found a tag pointing elsewhere or a child missing after publishing."""

    default_hint = "re-run publish; if it persists, the registry is not serving what it stored"


class NotPublishedError(ManyfestError):
    """A list was not published because the run stopped before it (``--fail-fast``, or
    SIGINT/SIGTERM: see :class:`~manyfest.ops.publish.StopRequest`)."""

    default_hint = "fix the failing sources and re-run"


class MissingPlatformsError(ManyfestError):
    """A list would be published without platforms it must have: one of its plan's
    ``require_platforms`` (or ``--require-platforms``) is missing, or the ``--platform``
    filter left it no image. Raised after the sources resolved, before any write."""

    default_hint = "add a source for each missing platform, or change the platform policy"


class PublishFailed(ManyfestError):
    """A bulk publish finished but some lists failed (exit 3)."""

    exit_code = 3
    default_hint = "see the per-list errors above; re-running publishes only what is missing"


class Interrupted(ManyfestError):
    """A KeyboardInterrupt reached the CLI without its signal handlers (``run()`` called
    directly, not through :mod:`manyfest.cli.entry`); exit 130. Signals themselves are
    handled by :mod:`manyfest.interrupts` (130 for SIGINT, 143 for SIGTERM)."""

    exit_code = 130
    default_hint = "re-run to finish; tags already published stay as they are"


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf exception of a (nested) exception group (``group`` itself when it holds
    no group)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
