"""SIGKILL during a 200-list publish never leaves a tag at an incomplete list; a re-run
finishes only what is left.

One plan, killed at several points in turn (while a source of the last list is held, then
after k progress lines of each re-run), then run to the end. After every kill each of the 600
target tags is checked with manyfest's RegistryClient: absent, or pointing at its own list
with every child and blob present in the repository. Each run's progress lines and the last
run's report say ``unchanged`` exactly for the lists whose every tag had landed, ``created``
for those with no tag, ``updated`` for those a kill cut between their first tag and the extra
ones.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.helpers import manyfest, seed
from tests.quirk_proxy import Hold, QuirkProxy
from tests.registry_server import RegistryServer
from tests.signal_helpers import Run, TagChecker, list_tags, plan_text, sources

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

N = 200


def _expected(state: dict[str, str], group: list[str], digest: str) -> str:
    """The status a run must report for a list, from its tags before the run."""
    now = [state[t] for t in group]
    assert set(now) <= {"", digest}, f"{group}: tags at {now}, the list is {digest}"
    if now == [digest] * len(group):
        return "unchanged"
    if now[0] == "":
        assert set(now) == {""}, f"{group}: an extra tag landed before the first: {now}"
        return "created"
    return "updated"  # the first tag landed, an extra one did not


def _progress(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``[k/N] status target digest (...)`` lines: target -> (status, digest)."""
    out: dict[str, tuple[str, str]] = {}
    for line in lines:
        if line.startswith("[") and f"/{N}] " in line:
            _, status, target, digest = line.split()[:4]
            out[target] = (status, digest)
    return out


def test_sigkill_never_leaves_a_broken_tag(
    registry: RegistryServer, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MANYFEST_CACHE_DIR", str(tmp_path / "cache"))
    src = f"{ns}-src"
    seed(registry.host, sources(src, N))
    proxy = QuirkProxy(registry.host).start()
    try:
        plan = tmp_path / "plan.yaml"
        plan.write_text(plan_text(proxy.host, src, ns, N))
        groups = list_tags(registry.host, ns, N)
        flat = [t for group in groups for t in group]
        # The same list through the proxy's name (progress lines) and the registry's.
        via_proxy = {f"{proxy.host}/{ns}/app:1.{i}": i for i in range(N)}
        checker = TagChecker(registry.host)
        state = checker.tags(flat)
        assert set(state.values()) == {""}
        digests: dict[int, str] = {}

        for point in ("resolve", 1, 40, 90):
            hold = None
            if point == "resolve":
                hold = Hold(proxy, "GET", f"/{src}/app-win/manifests/1.{N - 1}")
                proxy.before.append(hold)
            run = Run("publish", str(plan))
            try:
                if hold is not None:
                    hold.wait_held()  # the resolve phase cannot end while this is held
                else:
                    run.wait_progress(int(point))
                run.send(signal.SIGKILL)
                code, _, lines = run.finish()
            finally:
                run.kill()
                if hold is not None:
                    hold.release()
                    proxy.before.clear()
            assert code == -signal.SIGKILL
            proxy.wait_idle()  # what the killed run had sent reaches the registry first
            done = _progress(lines)
            if point == "resolve":
                # Publishing is pipelined: lists whose sources are read may land while the
                # last list's source is held; that one cannot.
                assert f"{proxy.host}/{ns}/app:1.{N - 1}" not in done
            else:
                assert len(done) >= int(point)
            for target, (status, digest) in done.items():
                i = via_proxy[target]
                assert digests.setdefault(i, digest) == digest
                assert status == _expected(state, groups[i], digest), (target, status)
            after = checker.tags(flat)  # every tag that exists points at a complete list
            for target, (_, digest) in done.items():
                assert [after[t] for t in groups[via_proxy[target]]] == [digest] * 3
            for i, group in enumerate(groups):
                moved = {after[t] for t in group} - {""}
                assert len(moved) <= 1, group
                if moved and i in digests:
                    assert moved == {digests[i]}, group
            if point == "resolve":
                assert {after[t] for t in groups[N - 1]} == {""}, "a tag of the held list moved"
            state = after

        # The re-run finishes only what is left.
        final = manyfest("publish", "--json", str(plan), timeout=600)
        assert final.returncode == 0, final.stderr
        report = json.loads(final.stdout)
        assert report["summary"]["failed"] == 0
        landed = 0
        for i, result in enumerate(report["results"]):
            assert result["target"] == f"{proxy.host}/{ns}/app:1.{i}"
            assert digests.setdefault(i, result["digest"]) == result["digest"]
            expected = _expected(state, groups[i], result["digest"])
            assert result["status"] == expected, result
            landed += expected == "unchanged"
        assert report["summary"]["unchanged"] == landed
        assert landed >= 90  # the last killed run had finished 90 lists (each line: all tags)
        assert report["summary"]["created"] + report["summary"]["updated"] == N - landed
        end = checker.tags(flat)
        for i, group in enumerate(groups):
            assert [end[t] for t in group] == [digests[i]] * 3, group
    finally:
        proxy.stop()
