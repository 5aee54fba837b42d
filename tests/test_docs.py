"""docs/ stays true: the command reference is current, every plan example parses to the lists
it says and publishes (``--dry-run``) against a real registry, every configuration example
loads, and the library example runs.

Examples are marked by an HTML comment on the line before their fence:

* ``<!-- plan lists=N -->`` before a ```` ```yaml ```` block: a plan of N lists. It is parsed
  with manyfest's plan parser, then ``registry.example.com/`` is replaced by the test registry
  and a namespace of its own, its sources (and ``subject``) are pushed, and ``manyfest publish
  --dry-run`` must plan every list and tag. ``sources=index`` pushes each source as buildx
  does (an index of the image and its attestation). A source's platform is its plan override
  where it sets os/architecture, else read from its name (``arm64``, ``arm``, else amd64).
* ``<!-- plan error="TEXT" -->``: a plan that must be refused with exactly TEXT (the file
  named ``release.yaml``).
* ``<!-- config -->``: a configuration file (``manyfest.config.load``).
* ``<!-- workflow -->``: a CI workflow or Kubernetes object running manyfest (checked by the
  tests of the feature it shows, e.g. ``tests/test_shard.py``).
* ``<!-- api-example -->`` before a ```` ```python ```` block: run as is against the registry
  holding ``demo/app-amd64:1.0.0`` and ``demo/app-arm64:1.0.0``; it must print the block
  marked ``<!-- api-example-output -->`` (digests, sizes and the registry's address aside).
* ``<!-- stderr exit=N: manyfest ARGS -->``: the command exits N and prints exactly the block
  on stderr.

Every ```` ```yaml ```` block under docs/ must carry one of these markers, so none escapes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

import manyfest
from manyfest import config, errors, reference
from manyfest.errors import PlanError
from manyfest.ops.plan import PlanList, from_args, parse_documents
from manyfest.platform import Platform
from manyfest.registry import RegistryClient
from manyfest.transport import Settings, Transport
from manyfest.words import plural
from tests.helpers import PLATFORMS, REPO_ROOT, seed
from tests.helpers import manyfest as run_manyfest
from tests.imagewriter import build_attested_index, push_attested_index

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

if TYPE_CHECKING:
    from tests.registry_server import RegistryServer

DOCS = REPO_ROOT / "docs"
GENERATOR = REPO_ROOT / "scripts" / "gen_cli_docs.py"
EXAMPLE_HOST = "registry.example.com"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!--\s*(.*?)\s*-->\s*\Z", re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced block of a docs page: where it is, its language, marker and text."""

    page: str
    line: int
    language: str
    marker: str
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    def option(self, name: str) -> str | None:
        """``name=value`` or ``name="value"`` of the marker."""
        match = re.search(rf'\b{name}=(?:"([^"]*)"|(\S+))', self.marker)
        return None if match is None else (match.group(1) or match.group(2))


def _blocks() -> list[Block]:
    out: list[Block] = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for match in _FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n")
            last = before.rsplit("\n", 1)[-1]
            marker = _MARKER.search(last)
            out.append(Block(page.name, before.count("\n") + 2, match.group(1),
                             marker.group(1) if marker else "", match.group(2)))
    return out


BLOCKS = _blocks()
PLANS = [b for b in BLOCKS if b.marker.startswith("plan ") and b.option("lists")]
REFUSED = [b for b in BLOCKS if b.marker.startswith("plan ") and b.option("error")]
CONFIGS = [b for b in BLOCKS if b.marker == "config"]


def test_commands_md_is_current() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, str(GENERATOR)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    path = DOCS / "commands.md"
    current = path.read_text() if path.exists() else ""
    assert proc.stdout == current, (
        "docs/commands.md is stale: run `python scripts/gen_cli_docs.py > docs/commands.md`"
    )


def test_commands_md_does_not_depend_on_the_terminal() -> None:
    runs = [
        subprocess.run([sys.executable, str(GENERATOR)], capture_output=True, text=True,
                       env=dict(os.environ, COLUMNS=columns, TERM="xterm"), timeout=120,
                       check=False).stdout
        for columns in ("40", "300")
    ]
    assert runs[0] == runs[1]
    for command in ("inspect", "create", "annotate", "push", "rm", "publish"):
        assert f"## `manyfest {command}`\n" in runs[0], command
    assert "* `--dry-run`:" in runs[0]


def test_every_yaml_block_is_marked() -> None:
    unmarked = [b.where for b in BLOCKS if b.language == "yaml"
                and not (b.marker.startswith("plan ") or b.marker in ("config", "workflow"))]
    assert unmarked == [], f"yaml blocks without a <!-- plan ... -->, <!-- config --> or "\
        f"<!-- workflow --> marker: "\
        f"{unmarked}"
    assert len(PLANS) >= 12, [b.where for b in PLANS]
    assert {b.page for b in PLANS} >= {"plan.md", "migration.md"}
    assert CONFIGS, "docs/configuration.md lost its configuration example"


@pytest.mark.parametrize("block", PLANS, ids=[b.where for b in PLANS])
def test_plan_example_parses(block: Block) -> None:
    lists = parse_documents(block.text, block.where)
    assert len(lists) == int(block.option("lists") or "0"), [str(p.target) for p in lists]


@pytest.mark.parametrize("block", REFUSED, ids=[b.where for b in REFUSED])
def test_refused_plan_example(block: Block) -> None:
    with pytest.raises(PlanError) as caught:
        parse_documents(block.text, "release.yaml")
    assert caught.value.one_line() == block.option("error")


def _plan(page: str, needle: str) -> list[PlanList]:
    [block] = [b for b in PLANS if b.page == page and needle in b.text]
    return parse_documents(block.text, block.where)


def test_release_aliases_give_latest_to_the_newest_only() -> None:
    lists = _plan("plan.md", "# the newest release: every alias")
    assert {p.target.tag: p.tags for p in lists} == {
        "2.0.0": ["2.0.0", "2.0", "2", "latest"],
        "1.2.1": ["1.2.1", "1.2", "1"],
        "1.2.0": ["1.2.0"],
        "1.1.4": ["1.1.4", "1.1"],
    }


def test_matrix_examples_expand_in_matrix_order() -> None:
    lists = _plan("plan.md", "org.opencontainers.image.source")
    assert [p.target.tag for p in lists] == [
        "1.0.0", "1.0.0-alpine", "1.1.0", "1.1.0-alpine", "2.0.0", "2.0.0-alpine"]
    second = lists[1]
    assert [str(e.ref) for e in second.entries] == [
        f"{EXAMPLE_HOST}/app-linux-{arch}:1.0.0-alpine"
        for arch in ("amd64", "arm64v8", "armv7", "s390x")]
    assert second.annotations["org.opencontainers.image.version"] == "1.0.0"
    assert second.extra_tags == ("1.0.0-alpine-stable",)
    flavours = _plan("plan.md", "latest{suffix}")  # computed aliases: tests/test_aliases.py
    assert [p.tags for p in flavours][-2:] == [
        ["2.0.0", "2.0.0-stable", "2", "latest", "stable", "v2.0"],
        ["2.0.0-alpine", "2.0.0-alpine-stable", "2-alpine", "latest-alpine", "stable-alpine",
         "v2.0-alpine"]]


def test_windows_example_keeps_os_version() -> None:
    [windows] = _plan("plan.md", "app-win-ltsc2019")
    overrides = [e.override for e in windows.entries]
    assert [o.os_version if o else "" for o in overrides] == [
        "", "", "10.0.17763.5458", "10.0.20348.2227"]
    assert overrides[3] is not None
    assert overrides[3].os_features == ["win32k"]


def test_from_args_example_is_the_plan_shown() -> None:
    [plan] = _plan("plan.md", "app-linux-armv7:1.0")
    [args] = from_args(["linux/amd64,linux/arm64/v8,linux/arm/v7"],
                       f"{EXAMPLE_HOST}/app-OS-ARCHVARIANT:1.0", f"{EXAMPLE_HOST}/app:1.0",
                       ["1,latest"], ["org.opencontainers.image.version=1.0"])
    assert plan.tags == args.tags
    assert plan.annotations == args.annotations
    assert [(e.ref, e.override) for e in plan.entries] == [
        (e.ref, e.override) for e in args.entries]
    assert plan.media_type == "oci"


@pytest.mark.parametrize("block", CONFIGS, ids=[b.where for b in CONFIGS])
def test_configuration_example_loads(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(block.text)
    loaded = config.load(path)
    settings = config.settings(loaded)
    assert settings.concurrency == (loaded.concurrency or 64)


# ------------------------------------------------------------------ dry runs


def _guess(name: str) -> Platform:
    """The platform to push a source without an override with, read from its name."""
    repository = name.rsplit(":", 1)[0]
    if "arm64" in repository:
        return PLATFORMS[2]
    if "arm" in repository:
        return PLATFORMS[1]
    return PLATFORMS[0]


def _sources(lists: list[PlanList], host: str) -> dict[str, Platform]:
    """``{repository:tag: platform}`` of every source (and ``subject``) of a plan."""
    out: dict[str, Platform] = {}
    for plan in lists:
        for entry in plan.entries:
            name = str(entry.ref).removeprefix(f"{host}/")
            o = entry.override
            guess = _guess(name)
            out[name] = guess if o is None or not (o.os and o.architecture) else Platform(
                o.os, o.architecture, o.variant, o.os_version, tuple(o.os_features))
        if plan.subject:
            subject = (plan.target.with_tag(plan.subject[1:]) if plan.subject.startswith(":")
                       else reference.parse(plan.subject))
            out[str(subject).removeprefix(f"{host}/")] = PLATFORMS[0]
    return out


def _push_indexes(host: str, sources: dict[str, Platform], seed_text: str) -> None:
    async def push() -> None:
        async with Transport(Settings()) as transport:
            client = RegistryClient(transport)
            for name, platform in sources.items():
                item = build_attested_index(platform, f"{seed_text} {name}")
                await push_attested_index(client, reference.parse(f"{host}/{name}"), item)

    anyio.run(push)


@pytest.mark.parametrize("block", PLANS, ids=[b.where for b in PLANS])
def test_plan_example_publishes_dry_run(block: Block, registry: RegistryServer, ns: str,
                                        tmp_path: Path) -> None:
    text = block.text.replace(f"{EXAMPLE_HOST}/", f"{registry.host}/{ns}/")
    lists = parse_documents(text, block.where)
    sources = _sources(lists, registry.host)
    if block.option("sources") == "index":
        _push_indexes(registry.host, sources, ns)
    else:
        # One image per source (versions are different images): lists of identical bytes
        # would be one unit of work, whose second list shows only its tags.
        seed(registry.host, [(name, p, f"{ns} {name}") for name, p in sources.items()])
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    proc = run_manyfest("publish", "--dry-run", str(path))
    assert proc.returncode == 0, proc.stderr
    plan_text = proc.stdout  # the dry-run's diff is data: stdout; progress goes to stderr
    assert f"would publish {plural(len(lists), 'list')}: {len(lists)} created, 0 updated, " \
        "0 unchanged, 0 failed" in proc.stderr, proc.stderr
    for line in proc.stderr.splitlines():
        if line.startswith("warning: "):  # only the mixed-list warning of an OCI index of
            # Docker-built images is expected; a platform or other warning is a bad example
            assert re.fullmatch(r"warning: \S+ is an OCI index with \d+ Docker "
                                r"(?:child|children) of \d+ \(first sha256:[0-9a-f]{64}\); "
                                r"some registries refuse mixed lists: --media-type sets the "
                                r"list's type", line), line
            assert any(p.media_type == "oci" for p in lists), line
    indexes = block.option("sources") == "index"
    for plan in lists:
        for tag in plan.tags:
            assert f"  put {plan.target.with_tag(tag)} -> sha256:" in plan_text, tag
        section = _section(plan_text, str(plan.target))
        children = re.findall(r"^  push child sha256:[0-9a-f]{64} \((\S+)\)$", section, re.M)
        images = [c for c in children if c != "unknown/unknown"]
        assert len(images) == len(plan.entries), section
        attestations = len(plan.entries) if indexes and plan.attestations == "keep" else 0
        assert children.count("unknown/unknown") == attestations, section
        for entry in plan.entries:
            if entry.override is not None and entry.override.os_version:
                assert f"{entry.override.os}/{entry.override.architecture}:" \
                    f"{entry.override.os_version}" in images, (entry, images)


def _section(plan_text: str, target: str) -> str:
    """The dry-run's lines for one list: its ``would create TARGET DIGEST`` line and those
    indented under it."""
    lines = plan_text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(f"would create {target} "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")),
               len(lines))
    return "\n".join(lines[start:end])


# ------------------------------------------------------------------ the library


def _output_pattern(expected: str, host: str) -> re.Pattern[str]:
    """The documented output as a pattern: digests, sizes and the registry vary."""
    pattern = re.escape(expected.replace("127.0.0.1:5000", host))
    pattern = re.sub(r"sha256:[0-9a-f]{64}", "sha256:[0-9a-f]{64}", pattern)
    pattern = re.sub(r"(linux/[a-z0-9/]+)\\ \d+", r"\1\\ \\d+", pattern)
    return re.compile(pattern + r"\Z")


def test_api_example_runs(registry: RegistryServer) -> None:
    [block] = [b for b in BLOCKS if b.marker == "api-example"]
    [output] = [b for b in BLOCKS if b.marker == "api-example-output"]
    assert block.language == "python"
    seed(registry.host, [("demo/app-amd64:1.0.0", PLATFORMS[0], "docs-api"),
                         ("demo/app-arm64:1.0.0", PLATFORMS[2], "docs-api")])
    env = dict(os.environ, REGISTRY=registry.host)
    proc = subprocess.run([sys.executable, "-c", block.text], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _output_pattern(output.text, registry.host).match(proc.stdout), proc.stdout


# ------------------------------------------------------------------ exit codes


def _exit_code_rows() -> list[tuple[str, int]]:
    text = (DOCS / "exit-codes.md").read_text()
    table = text.split("<!-- exit-codes -->\n", 1)[1].split("\n\n", 1)[0]
    return [(m.group(1), int(m.group(2)))
            for m in re.finditer(r"^\| `(\w+)` \| (\d+) \|", table, re.MULTILINE)]


def test_exit_code_table_matches_the_error_tree() -> None:
    rows = _exit_code_rows()
    for name, code in rows:
        assert getattr(errors, name).exit_code == code, name
    documented = {name for name, _ in rows}
    public = {name for name in manyfest.__all__ if name.endswith(("Error", "Failed"))}
    assert public <= documented, public - documented
    assert config.ConfigError.exit_code == 2


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker.startswith("stderr ")],
                         ids=lambda b: b.where)
def test_documented_error_line(block: Block) -> None:
    marker = re.fullmatch(r"stderr exit=(\d+): manyfest (.*)", block.marker)
    assert marker is not None, f"{block.where}: marker {block.marker!r}"
    exit_code, command = marker.groups()
    proc = run_manyfest(*command.split())
    assert proc.returncode == int(exit_code)
    assert proc.stderr == block.text
