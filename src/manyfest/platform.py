"""Platforms: parse ``os/arch[/variant]``, format, and validate os/arch/variant.

Validation is stricter than docker's (which checks 28 hard-coded os/arch pairs in ``annotate``
only and never checks variants, ``cli/command/manifest/util.go``): the pairs are Go's
``go tool dist list`` ports, and variants are checked per architecture following the OCI
image-index ``platform.variant`` table (arm v6-v8, arm64 v8) widened with Go's own levels
(``GOARM`` v5, ``GOARM64`` v8.x/v9.x, ``GOAMD64`` v1-v4, ``GORISCV64`` profiles, ``GOPPC64``
power8-10).

:func:`enforce` is the one policy every command applies (``--platform-check error|warn|off``):
by default a platform the user wrote is refused when it is not in the table, and one read from
an image (its config, or a source index's descriptor) is taken as built, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from manyfest.errors import PlatformError

_GO_PORTS: dict[str, tuple[str, ...]] = {
    "aix": ("ppc64",),
    "android": ("386", "amd64", "arm", "arm64"),
    "darwin": ("amd64", "arm64"),
    "dragonfly": ("amd64",),
    "freebsd": ("386", "amd64", "arm", "arm64", "riscv64"),
    "illumos": ("amd64",),
    "ios": ("amd64", "arm64"),
    "js": ("wasm",),
    "linux": (
        "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle",
        "ppc64", "ppc64le", "riscv64", "s390x",
    ),
    "netbsd": ("386", "amd64", "arm", "arm64"),
    "openbsd": ("386", "amd64", "arm", "arm64", "ppc64", "riscv64"),
    "plan9": ("386", "amd64", "arm"),
    "solaris": ("amd64",),
    "wasip1": ("wasm",),
    "windows": ("386", "amd64", "arm64"),
}
"""Go's ports, as ``go tool dist list`` prints them (Go 1.25; Go 1.26 dropped windows/arm)."""

_OLDER_PORTS: dict[str, tuple[str, ...]] = {
    "darwin": ("386", "arm"),  # removed in Go 1.15; docker's annotate still accepts them
    "windows": ("arm",),  # removed in Go 1.26; images built for it before stay valid
}
"""Pairs Go no longer builds that images (and ``docker manifest annotate``) still carry."""

VALID_OS_ARCH: frozenset[tuple[str, str]] = frozenset(
    (os_, arch)
    for table in (_GO_PORTS, _OLDER_PORTS)
    for os_, arches in table.items()
    for arch in arches
)
"""Every valid os/architecture pair: Go's ports and the older ones images still carry."""

_VARIANTS: dict[str, re.Pattern[str]] = {
    # OCI image-index table: arm v6, v7, v8; Go's GOARM adds v5.
    "arm": re.compile(r"v[5-8]"),
    # OCI: arm64 v8; Go's GOARM64 and containerd: v8.0-v8.9 and v9, v9.0-v9.9.
    "arm64": re.compile(r"v[89](?:\.[0-9])?"),
    # Go's GOAMD64 micro-architecture levels.
    "amd64": re.compile(r"v[1-4]"),
    # Go's GORISCV64 profiles (RVA20U64, RVA22U64, RVA23U64).
    "riscv64": re.compile(r"rva2[023]u64"),
    # Go's GOPPC64 levels.
    "ppc64": re.compile(r"power(?:8|9|10)"),
    "ppc64le": re.compile(r"power(?:8|9|10)"),
}
"""The variants each architecture takes (matched whole); an architecture not here takes
none."""

CHECK_MODES = ("error", "warn", "off")
"""``--platform-check`` / ``platform_check`` values; '' (not given) is the default policy."""


@dataclass(frozen=True, slots=True)
class Platform:
    """A platform as OCI describes it (image-index ``platform``).

    Attributes:
        os: e.g. ``linux``, ``windows``.
        architecture: GOARCH spelling, e.g. ``amd64``, ``arm64``, ``386``.
        variant: e.g. ``v7`` for ``arm``; empty when none.
        os_version: ``os.version``, e.g. ``10.0.17763.1879``; empty when none.
        os_features: ``os.features``, e.g. ``("win32k",)``.
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        if self.variant:
            text += f"/{self.variant}"
        if self.os_version:
            text += f":{self.os_version}"
        return text

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (attestation entries)."""
        return self.os == "unknown" and self.architecture == "unknown"


def parse(text: str) -> Platform:
    """Parse ``os/arch[/variant][:os.version]`` (crane/regctl/buildx notation).

    Raises:
        PlatformError: fewer than two or more than three ``/``-separated parts, or a ``:``
            with no os.version after it (or a second ``:``).
    """
    main, colon, os_version = text.partition(":")
    parts = main.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise PlatformError(f"invalid platform {text!r}: expected os/arch[/variant]")
    if colon and (not os_version or ":" in os_version):
        raise PlatformError(
            f"invalid platform {text!r}: expected os/arch[/variant][:os.version]",
            hint="write the os.version after one ':', e.g. windows/amd64:10.0.20348.2113",
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "", os_version)


def validate(os_: str, architecture: str, variant: str) -> None:
    """Check an os/architecture pair and its variant.

    Raises:
        PlatformError: the pair is not a known port (e.g. ``linux/armv8``), or the variant does
            not exist for the architecture (e.g. ``arm64`` + ``v7``, ``amd64`` + ``v8``).
    """
    if (os_, architecture) not in VALID_OS_ARCH:
        raise PlatformError(
            f"manifest entry for image has unsupported os/arch combination: {os_}/{architecture}"
        )
    if not variant:
        return
    pattern = _VARIANTS.get(architecture)
    if pattern is None or not pattern.fullmatch(variant):
        raise PlatformError(
            f"unsupported variant {variant!r} for architecture {architecture!r} "
            f"({os_}/{architecture}/{variant})",
            hint=_variant_hint(architecture),
        )


def _variant_hint(architecture: str) -> str:
    known = {
        "arm": "arm takes v5, v6, v7 or v8",
        "arm64": "arm64 takes v8, v8.x, v9 or v9.x (arm/v7 is --arch arm --variant v7)",
        "amd64": "amd64 takes v1, v2, v3 or v4 (v8 is an arm64 variant)",
        "riscv64": "riscv64 takes a profile: rva20u64, rva22u64 or rva23u64",
        "ppc64": "ppc64 takes power8, power9 or power10",
        "ppc64le": "ppc64le takes power8, power9 or power10",
    }
    return known.get(architecture, f"{architecture} has no variants")


_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
"""The variant an entry without one is taken to have when matching (containerd's
normalisation: ``linux/arm64`` is ``linux/arm64/v8``, ``linux/arm`` is ``linux/arm/v7``,
``linux/amd64`` is ``linux/amd64/v1``)."""

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386"}


def normalize(p: Platform) -> Platform:
    """``p`` with os lower-cased, architecture aliases resolved (``aarch64`` → ``arm64``,
    ``x86_64`` → ``amd64``) and the architecture's default variant filled in."""
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant or _DEFAULT_VARIANT.get(arch, "")
    if arch == "arm64" and variant == "8":
        variant = "v8"
    return Platform(p.os.lower(), arch, variant, p.os_version, p.os_features)


def matches(entry: Platform | None, wanted: Platform) -> bool:
    """True when a list entry's platform is what a ``--platform os/arch[/variant]`` asks for.

    As docker's and containerd's matchers: os and architecture must be equal (after
    :func:`normalize`); a variant in ``wanted`` must equal the entry's (normalised, so
    ``linux/arm64/v8`` matches an entry without a variant); a ``wanted`` without a variant
    matches any variant. An ``os.version`` in ``wanted`` (``windows/amd64:10.0.17763``) must
    be a prefix of the entry's. ``unknown/unknown`` (attestation) entries never match.
    """
    if entry is None or entry.is_unknown:
        return False
    e, w = normalize(entry), normalize(wanted)
    if (e.os, e.architecture) != (w.os, w.architecture):
        return False
    if wanted.variant and e.variant != w.variant:
        return False
    return not wanted.os_version or e.os_version.startswith(wanted.os_version)


def enforce(
    p: Platform,
    *,
    mode: str,
    written: bool,
    name: str,
    warn: Callable[[str], None],
) -> None:
    """Apply the platform policy (``--platform-check``) to one list entry's platform.

    The table is :func:`validate`'s. ``unknown/unknown`` (attestation entries) is never
    checked.

    Args:
        p: the platform the entry will have.
        mode: ``error`` (refuse), ``warn`` (call ``warn`` and go on), ``off`` (no check), or
            '' for the default: ``error`` when ``written``, ``warn`` otherwise.
        written: True when the user wrote the platform (``annotate`` flags, a plan's platform
            override, ``--platforms``); False when it was read from the image (its config, or
            the descriptor of a source index): what was built is taken as built by default.
        name: the image the entry is, e.g. ``reg/app-arm64:1``; starts every message.
        warn: receives the one-line warning under ``warn``.

    Raises:
        PlatformError: (exit 2) the platform is not in the table and the mode is ``error``.
        ValueError: ``mode`` is not one of :data:`CHECK_MODES` or ''.
    """
    if mode not in ("", *CHECK_MODES):
        raise ValueError(f"platform check mode must be error, warn or off, not {mode!r}")
    effective = mode or ("error" if written else "warn")
    if effective == "off" or p.is_unknown:
        return
    try:
        validate(p.os, p.architecture, p.variant)
    except PlatformError as exc:
        origin = "as written" if written else "as built"
        if effective == "warn":
            warn(f"{name}: {exc.message}; not in the platform table, kept {origin}")
            return
        hint = exc.hint if written else (
            "the image's config declares this platform: rebuild it, set the platform "
            "(`manyfest annotate`, or a platform in the plan), or pass --platform-check warn "
            "to take it as built"
        )
        raise PlatformError(f"{name}: {exc.message}", hint=hint) from exc
