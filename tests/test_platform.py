"""Unit tests for manyfest.platform: parse, format and validate os/arch/variant."""

from __future__ import annotations

import pytest

from manyfest import platform
from manyfest.errors import PlatformError
from manyfest.platform import Platform


@pytest.mark.parametrize(
    ("os_", "arch", "variant"),
    [
        ("linux", "arm", "v5"),
        ("linux", "arm", "v6"),
        ("linux", "arm", "v7"),
        ("linux", "arm", "v8"),
        ("linux", "arm", ""),
        ("linux", "arm64", "v8"),
        ("linux", "arm64", "v8.2"),
        ("linux", "arm64", "v9"),
        ("linux", "arm64", "v9.4"),
        ("linux", "arm64", ""),
        ("linux", "amd64", ""),
        ("linux", "amd64", "v1"),
        ("linux", "amd64", "v2"),
        ("linux", "amd64", "v4"),
        ("linux", "386", ""),
        ("linux", "riscv64", "rva22u64"),
        ("linux", "loong64", ""),
        ("linux", "s390x", ""),
        ("linux", "ppc64le", ""),
        ("windows", "amd64", ""),
        ("windows", "arm64", ""),
        ("windows", "arm64", "v8"),
        ("darwin", "arm64", ""),
        ("js", "wasm", ""),
        ("wasip1", "wasm", ""),
    ],
)
def test_valid(os_: str, arch: str, variant: str) -> None:
    assert platform.validate(os_, arch, variant) is None


@pytest.mark.parametrize(
    ("os_", "arch", "variant", "hint"),
    [
        (
            "linux", "arm64", "v7",
            "arm64 takes v8, v8.x, v9 or v9.x (arm/v7 is --arch arm --variant v7)",
        ),
        ("linux", "arm64", "v10", "arm64 takes v8, v8.x, v9 or v9.x (arm/v7 is --arch arm "
         "--variant v7)"),
        ("linux", "amd64", "v8", "amd64 takes v1, v2, v3 or v4 (v8 is an arm64 variant)"),
        ("linux", "amd64", "v5", "amd64 takes v1, v2, v3 or v4 (v8 is an arm64 variant)"),
        ("linux", "arm", "v4", "arm takes v5, v6, v7 or v8"),
        ("linux", "arm", "v9", "arm takes v5, v6, v7 or v8"),
        ("linux", "arm", "7", "arm takes v5, v6, v7 or v8"),
        ("linux", "386", "v1", "386 has no variants"),
        ("linux", "386", "v7", "386 has no variants"),
        ("linux", "386", "sse2", "386 has no variants"),
        ("linux", "s390x", "v1", "s390x has no variants"),
        ("linux", "riscv64", "v1", "riscv64 takes a profile: rva20u64, rva22u64 or rva23u64"),
    ],
)
def test_bad_variant(os_: str, arch: str, variant: str, hint: str) -> None:
    with pytest.raises(PlatformError) as info:
        platform.validate(os_, arch, variant)
    assert str(info.value) == (
        f"unsupported variant {variant!r} for architecture {arch!r} ({os_}/{arch}/{variant})"
    )
    assert info.value.hint == hint
    assert info.value.exit_code == 2


def test_arm64_v7_message_names_combination() -> None:
    with pytest.raises(PlatformError, match=r"\(linux/arm64/v7\)"):
        platform.validate("linux", "arm64", "v7")


@pytest.mark.parametrize(
    ("os_", "arch"),
    [
        ("linux", "armv8"),
        ("linux", "armv7"),
        ("linux", "aarch64"),
        ("linux", "x86_64"),
        ("windows", "s390x"),
        ("darwin", "ppc64le"),
        ("Linux", "amd64"),
        ("", "amd64"),
        ("linux", ""),
    ],
)
def test_unsupported_os_arch(os_: str, arch: str) -> None:
    with pytest.raises(PlatformError) as info:
        platform.validate(os_, arch, "v8")
    assert str(info.value) == (
        f"manifest entry for image has unsupported os/arch combination: {os_}/{arch}"
    )
    assert info.value.hint == "use a valid os/arch/variant, e.g. linux/arm/v7 or linux/arm64/v8"


def test_variant_with_trailing_newline_refused() -> None:
    with pytest.raises(PlatformError):
        platform.validate("linux", "arm", "v7\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/amd64", Platform("linux", "amd64")),
        ("windows/amd64:10.0.17763", Platform("windows", "amd64", "", "10.0.17763")),
        (
            "windows/amd64/v2:10.0.17763.1879",
            Platform("windows", "amd64", "v2", "10.0.17763.1879"),
        ),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
    ],
)
def test_parse(text: str, expected: Platform) -> None:
    assert platform.parse(text) == expected
    assert str(platform.parse(text)) == text


@pytest.mark.parametrize(
    "text", ["", "linux", "linux/", "/amd64", "linux//v7", "a/b/c/d", "linux/arm/", ":1.0"]
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(PlatformError) as info:
        platform.parse(text)
    assert str(info.value) == f"invalid platform {text!r}: expected os/arch[/variant]"
    assert info.value.exit_code == 2


def test_str_and_unknown() -> None:
    assert str(Platform("linux", "arm", "v7", "", ("x",))) == "linux/arm/v7"
    assert str(Platform("windows", "amd64", "", "10.0")) == "windows/amd64:10.0"
    assert Platform("unknown", "unknown").is_unknown
    assert not Platform("linux", "unknown").is_unknown
    assert not Platform("unknown", "amd64").is_unknown


# The 28 pairs `docker manifest annotate` accepts (docker/cli cli/command/manifest/util.go):
# a drop-in must accept every one of them.
DOCKER_OS_ARCHES = [
    ("darwin", "386"), ("darwin", "amd64"), ("darwin", "arm"), ("darwin", "arm64"),
    ("dragonfly", "amd64"), ("freebsd", "386"), ("freebsd", "amd64"), ("freebsd", "arm"),
    ("linux", "386"), ("linux", "amd64"), ("linux", "arm"), ("linux", "arm64"),
    ("linux", "ppc64le"), ("linux", "mips64"), ("linux", "mips64le"), ("linux", "riscv64"),
    ("linux", "s390x"), ("netbsd", "386"), ("netbsd", "amd64"), ("netbsd", "arm"),
    ("openbsd", "386"), ("openbsd", "amd64"), ("openbsd", "arm"), ("plan9", "386"),
    ("plan9", "amd64"), ("solaris", "amd64"), ("windows", "386"), ("windows", "amd64"),
]


def test_every_docker_pair_accepted() -> None:
    assert len(set(DOCKER_OS_ARCHES)) == 28
    assert set(DOCKER_OS_ARCHES) <= platform.VALID_OS_ARCH
    for os_, arch in DOCKER_OS_ARCHES:
        platform.validate(os_, arch, "")


@pytest.mark.parametrize(
    ("entry", "wanted", "expected"),
    [
        (Platform("linux", "arm64", "v8"), "linux/arm64", True),
        (Platform("linux", "arm64"), "linux/arm64/v8", True),
        (Platform("linux", "arm64", "v9"), "linux/arm64/v8", False),
        (Platform("linux", "arm64", "v9"), "linux/arm64", True),
        (Platform("linux", "arm", "v7"), "linux/arm", True),
        (Platform("linux", "arm"), "linux/arm/v7", True),
        (Platform("linux", "arm", "v6"), "linux/arm/v7", False),
        (Platform("linux", "amd64"), "linux/amd64/v1", True),
        (Platform("linux", "amd64", "v3"), "linux/amd64", True),
        (Platform("linux", "amd64"), "linux/arm64", False),
        (Platform("linux", "amd64"), "windows/amd64", False),
        (Platform("linux", "aarch64"), "linux/arm64", True),
        (Platform("windows", "amd64", "", "10.0.17763.1879"), "windows/amd64:10.0.17763", True),
        (Platform("windows", "amd64", "", "10.0.20348.1"), "windows/amd64:10.0.17763", False),
        (Platform("unknown", "unknown"), "unknown/unknown", False),
    ],
)
def test_matches(entry: Platform, wanted: str, expected: bool) -> None:
    assert platform.matches(entry, platform.parse(wanted)) is expected


def test_matches_nothing_for_no_platform() -> None:
    assert platform.matches(None, Platform("linux", "amd64")) is False
