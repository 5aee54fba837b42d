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


# ---------------------------------------------------------------- the current table


@pytest.mark.parametrize(
    "text",
    [
        "linux/loong64", "linux/riscv64", "linux/riscv64/rva20u64", "linux/riscv64/rva22u64",
        "linux/riscv64/rva23u64", "linux/ppc64le", "linux/ppc64le/power9",
        "linux/ppc64le/power10", "linux/ppc64/power8", "linux/s390x", "linux/mips64le",
        "linux/mips64", "linux/mips", "linux/mipsle", "linux/386", "windows/arm64",
        "windows/386", "windows/arm", "linux/amd64/v1", "linux/amd64/v2", "linux/amd64/v3",
        "linux/amd64/v4", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8",
        *(f"linux/arm64/v8.{i}" for i in range(10)), *(f"linux/arm64/v9.{i}" for i in range(10)),
        "linux/arm64/v8", "linux/arm64/v9", "wasip1/wasm", "js/wasm", "freebsd/riscv64",
        "freebsd/arm64", "openbsd/riscv64", "openbsd/ppc64", "netbsd/arm64", "aix/ppc64",
        "android/arm64", "ios/arm64", "illumos/amd64", "darwin/386", "darwin/arm",
        "darwin/arm64", "plan9/arm", "solaris/amd64", "dragonfly/amd64",
    ],
)
def test_table_accepts(text: str) -> None:
    p = platform.parse(text)
    assert platform.validate(p.os, p.architecture, p.variant) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("linux/arm64/v10", "unsupported variant 'v10' for architecture 'arm64'"),
        ("linux/arm64/v8.10", "unsupported variant 'v8.10' for architecture 'arm64'"),
        ("linux/arm64/v7", "unsupported variant 'v7' for architecture 'arm64'"),
        ("linux/arm64/8", "unsupported variant '8' for architecture 'arm64'"),
        ("linux/amd64/v0", "unsupported variant 'v0' for architecture 'amd64'"),
        ("linux/amd64/v8", "unsupported variant 'v8' for architecture 'amd64'"),
        ("linux/riscv64/rva21u64", "unsupported variant 'rva21u64' for architecture 'riscv64'"),
        ("linux/riscv64/rva22u32", "unsupported variant 'rva22u32' for architecture 'riscv64'"),
        ("linux/ppc64le/power7", "unsupported variant 'power7' for architecture 'ppc64le'"),
        ("linux/loong64/v1", "unsupported variant 'v1' for architecture 'loong64'"),
        ("linux/s390x/z15", "unsupported variant 'z15' for architecture 's390x'"),
        ("linux/wasm", "manifest entry for image has unsupported os/arch combination: linux/wasm"),
        ("js/amd64", "manifest entry for image has unsupported os/arch combination: js/amd64"),
        ("windows/s390x",
         "manifest entry for image has unsupported os/arch combination: windows/s390x"),
        ("darwin/riscv64",
         "manifest entry for image has unsupported os/arch combination: darwin/riscv64"),
        ("linux/arm64be",
         "manifest entry for image has unsupported os/arch combination: linux/arm64be"),
    ],
)
def test_table_refuses(text: str, message: str) -> None:
    p = platform.parse(text)
    with pytest.raises(PlatformError) as info:
        platform.validate(p.os, p.architecture, p.variant)
    assert str(info.value).startswith(message)


# `go tool dist list` of Go 1.25 (49 ports; Go 1.26 dropped windows/arm).
GO_1_25_PORTS = [
    "aix/ppc64", "android/386", "android/amd64", "android/arm", "android/arm64", "darwin/amd64",
    "darwin/arm64", "dragonfly/amd64", "freebsd/386", "freebsd/amd64", "freebsd/arm",
    "freebsd/arm64", "freebsd/riscv64", "illumos/amd64", "ios/amd64", "ios/arm64", "js/wasm",
    "linux/386", "linux/amd64", "linux/arm", "linux/arm64", "linux/loong64", "linux/mips",
    "linux/mips64", "linux/mips64le", "linux/mipsle", "linux/ppc64", "linux/ppc64le",
    "linux/riscv64", "linux/s390x", "netbsd/386", "netbsd/amd64", "netbsd/arm", "netbsd/arm64",
    "openbsd/386", "openbsd/amd64", "openbsd/arm", "openbsd/arm64", "openbsd/ppc64",
    "openbsd/riscv64", "plan9/386", "plan9/amd64", "plan9/arm", "solaris/amd64", "wasip1/wasm",
    "windows/386", "windows/amd64", "windows/arm", "windows/arm64"
]


def test_table_is_go_ports_plus_docker_older_pairs() -> None:
    go = {tuple(p.split("/")) for p in GO_1_25_PORTS}
    assert len(go) == 49
    # darwin/386 and darwin/arm left Go in 1.15; docker's annotate still accepts them.
    assert go | {("darwin", "386"), ("darwin", "arm")} == platform.VALID_OS_ARCH


# ---------------------------------------------------------------- the policy: enforce

ODD = Platform("linux", "amd64", "v8")
ODD_MESSAGE = "unsupported variant 'v8' for architecture 'amd64' (linux/amd64/v8)"


def _enforce(p: Platform, mode: str, written: bool) -> list[str]:
    warnings: list[str] = []
    platform.enforce(p, mode=mode, written=written, name="reg.io/app:1", warn=warnings.append)
    return warnings


@pytest.mark.parametrize("mode", ["", "error", "warn", "off"])
@pytest.mark.parametrize("written", [True, False])
def test_enforce_valid_platform_passes_silently(mode: str, written: bool) -> None:
    assert _enforce(Platform("linux", "arm64", "v8"), mode, written) == []
    assert _enforce(Platform("unknown", "unknown"), mode, written) == []


def test_enforce_default_refuses_written() -> None:
    with pytest.raises(PlatformError) as info:
        _enforce(ODD, "", True)
    assert info.value.one_line() == (
        f"reg.io/app:1: {ODD_MESSAGE}; amd64 takes v1, v2, v3 or v4 (v8 is an arm64 variant)"
    )
    assert info.value.exit_code == 2


def test_enforce_default_warns_about_built() -> None:
    assert _enforce(ODD, "", False) == [
        f"reg.io/app:1: {ODD_MESSAGE}; not in the platform table, kept as built"
    ]


@pytest.mark.parametrize("written", [True, False])
def test_enforce_warn_and_off(written: bool) -> None:
    kept = "written" if written else "built"
    assert _enforce(ODD, "warn", written) == [
        f"reg.io/app:1: {ODD_MESSAGE}; not in the platform table, kept as {kept}"
    ]
    assert _enforce(ODD, "off", written) == []


def test_enforce_error_refuses_built() -> None:
    with pytest.raises(PlatformError) as info:
        _enforce(ODD, "error", False)
    assert info.value.one_line() == (
        f"reg.io/app:1: {ODD_MESSAGE}; the image's config declares this platform: rebuild "
        "it, set the platform (`manyfest annotate`, or a platform in the plan), or pass "
        "--platform-check warn to take it as built"
    )


def test_enforce_never_checks_attestations() -> None:
    assert _enforce(Platform("unknown", "unknown"), "error", True) == []


def test_enforce_refuses_unknown_mode() -> None:
    with pytest.raises(ValueError, match="not 'strict'"):
        _enforce(ODD, "strict", True)


# ---------------------------------------------------------------- plan keys and values

from manyfest.errors import PlanError  # noqa: E402
from manyfest.ops import plan as plans  # noqa: E402

MT_DOC = """\
image: reg.io/app:1
require_platforms: [linux/amd64, "linux/arm64/v8"]
platform_check: warn
manifests:
  - image: reg.io/app-amd64:1
"""

COMPACT_DOC = """\
matrix: {version: ["1", "2"]}
image: reg.io/app:{version}
platforms: [linux/amd64, linux/arm64]
template: reg.io/app-{arch}:{version}
require_platforms: [linux/amd64, linux/arm64/v8]
platform_check: off
"""


def test_plan_keys_on_manifest_tool_document() -> None:
    (item,) = plans.parse_documents(MT_DOC)
    assert item.require_platforms == (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
    assert item.platform_check == "warn"
    (plain,) = plans.parse_documents("image: reg.io/a:1\nmanifests: [{image: reg.io/b:1}]\n")
    assert (plain.require_platforms, plain.platform_check) == ((), "")


def test_plan_keys_on_compact_document() -> None:
    lists = plans.parse_documents(COMPACT_DOC)
    assert [str(x.target) for x in lists] == ["reg.io/app:1", "reg.io/app:2"]
    for item in lists:
        assert item.require_platforms == (
            Platform("linux", "amd64"), Platform("linux", "arm64", "v8")
        )
        assert item.platform_check == "off"


def test_flag_overrides_plan_check() -> None:
    (item,) = plans.parse_documents(MT_DOC, platform_check="error")
    assert item.platform_check == "error"


def test_bad_platform_check_value() -> None:
    with pytest.raises(PlanError) as info:
        plans.parse_documents(MT_DOC.replace("platform_check: warn", "platform_check: strict"))
    assert info.value.one_line() == (
        "plan: document 1: platform_check: 'strict' is not error, warn or off; "
        "platform_check: error (refuse platforms outside the table), warn or off"
    )


def test_require_platforms_checked_against_table() -> None:
    text = MT_DOC.replace('"linux/arm64/v8"', "linux/arm64/v7").replace(
        "platform_check: warn\n", "")
    with pytest.raises(PlanError) as info:
        plans.parse_documents(text)
    assert info.value.one_line() == (
        "plan: document 1: require_platforms: linux/arm64/v7: unsupported variant 'v7' for "
        "architecture 'arm64' (linux/arm64/v7); arm64 takes v8, v8.x, v9 or v9.x (arm/v7 is "
        "--arch arm --variant v7)"
    )
    with pytest.raises(PlanError, match=r"require_platforms\[1\]: unknown placeholder"):
        plans.parse_documents(COMPACT_DOC.replace("linux/arm64/v8]", '"linux/{flavor}"]'))
    with pytest.raises(PlanError) as bad:
        plans.parse_documents(MT_DOC.replace('"linux/arm64/v8"', "linux"))
    assert str(bad.value) == (
        "plan: document 1: require_platforms: invalid platform 'linux': expected "
        "os/arch[/variant]"
    )


@pytest.mark.parametrize(
    ("mode", "refused"), [("", True), ("error", True), ("warn", False), ("off", False)]
)
def test_plan_override_checked_unless_warn_or_off(mode: str, refused: bool) -> None:
    text = ("image: reg.io/app:1\nmanifests:\n  - image: reg.io/odd:1\n"
            "    platform: {os: linux, architecture: amd64, variant: v8}\n")
    if refused:
        with pytest.raises(PlanError) as info:
            plans.parse_documents(text, platform_check=mode or None)
        assert str(info.value) == (
            f"plan: document 1: manifests[0].platform (reg.io/odd:1): {ODD_MESSAGE}"
        )
    else:
        (item,) = plans.parse_documents(text, platform_check=mode)
        assert item.platform_check == mode
    args = ["linux/amd64/v8"], "reg.io/app-ARCH:1", "reg.io/app:1"
    if refused:
        with pytest.raises(PlanError, match=r"unsupported variant 'v8' for architecture 'amd64'"):
            plans.from_args(*args, platform_check=mode)
    else:
        (item,) = plans.from_args(*args, platform_check=mode)
        assert item.entries[0].override == plans.PlatformSpec("amd64", "linux", "v8")


def test_platform_values() -> None:
    assert plans.platform_values(["linux/amd64,linux/arm64/v8", " linux/amd64 ", ""], "--x") == (
        Platform("linux", "amd64"), Platform("linux", "arm64", "v8")
    )
    # normalised before the table check, as --platform matching normalises
    assert plans.platform_values(["linux/aarch64"], "--x") == (Platform("linux", "aarch64"),)
    assert plans.platform_values(["windows/amd64:10.0.17763"], "--x") == (
        Platform("windows", "amd64", "", "10.0.17763"),
    )
    with pytest.raises(PlanError) as info:
        plans.platform_values(["linux/amd64/v8"], "--platform")
    assert str(info.value) == f"--platform: linux/amd64/v8: {ODD_MESSAGE}"
    assert plans.platform_values(["linux/amd64/v8"], "--platform", "warn") == (ODD,)
    assert plans.platform_values(["linux/amd64/v8"], "--platform", "off") == (ODD,)
    with pytest.raises(PlanError, match=r"^--platform: invalid platform 'a/b/c/d'"):
        plans.platform_values(["a/b/c/d"], "--platform", "off")


@pytest.mark.parametrize("text", ["linux/amd64:", "linux/amd64:1:2", "windows/amd64::10.0"])
def test_parse_refuses_an_empty_or_second_os_version(text: str) -> None:
    """QA: ``--platform linux/amd64:1:2`` filtered every list out (exit 3, after requests)
    and ``linux/amd64:`` was taken as no os.version: both are a usage error now."""
    with pytest.raises(PlatformError) as caught:
        platform.parse(text)
    assert caught.value.message == (
        f"invalid platform {text!r}: expected os/arch[/variant][:os.version]"
    )
    assert platform.parse("windows/amd64:10.0.20348.2113").os_version == "10.0.20348.2113"


def test_platform_flag_names_the_users_text_not_a_manifest_entry() -> None:
    from manyfest.errors import PlanError
    from manyfest.ops.plan import platform_values

    with pytest.raises(PlanError) as caught:
        platform_values(["linux/amd65"], "--platform")
    assert caught.value.message == (
        "--platform: linux/amd65: unsupported os/arch combination: linux/amd65"
    )
