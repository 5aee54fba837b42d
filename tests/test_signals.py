"""SIGINT and SIGTERM at many points of a run: exit 130/143, one line, nothing half-written.

Each test waits for a state (an import reported by ``-X importtime``, a request held at the
quirk proxy, the k-th progress line), then sends the signal, and checks: the exit status,
the last stderr line is the one summary line, no traceback, ``--json`` and ``--report``
complete (lists published + not published = all), the local store untouched, every cache
file valid, and every tag that exists pointing at a complete list.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, manyfest, seed
from tests.quirk_proxy import Hold, QuirkProxy
from tests.registry_server import RegistryServer
from tests.signal_helpers import (
    Run,
    TagChecker,
    assert_one_line,
    check_cache,
    check_reports,
    expect_code,
    list_tags,
    plan_text,
    snapshot,
    sources,
)

pytestmark = pytest.mark.slow  # end to end (see pyproject markers)

N = 24
SRC = "sigsrc"
SIGINT, SIGTERM = signal.SIGINT, signal.SIGTERM


@pytest.fixture(scope="module")
def seeded(registry: RegistryServer) -> str:
    """N x 4 source images, pushed once for the module."""
    seed(registry.host, sources(SRC, N))
    return SRC


@pytest.fixture(scope="module")
def proxy_server(registry: RegistryServer) -> Iterator[QuirkProxy]:
    proxy = QuirkProxy(registry.host).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(proxy_server: QuirkProxy) -> Iterator[QuirkProxy]:
    """The module's proxy with no quirks; held requests are released after the test."""
    proxy_server.before.clear()
    proxy_server.after.clear()
    yield proxy_server
    for quirk in proxy_server.before:
        if isinstance(quirk, Hold):
            quirk.release()
    proxy_server.before.clear()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MANYFEST_CACHE_DIR", str(path))
    return path


@pytest.fixture
def store(isolated_env: Path) -> Path:
    """The local store ($DOCKER_CONFIG/manifests)."""
    return isolated_env / ".docker" / "manifests"


def _plan(tmp_path: Path, host: str, ns: str) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_text(host, SRC, ns, N))
    return plan


def _no_temporaries(directory: Path) -> None:
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def _publish(proxy: QuirkProxy, ns: str, tmp_path: Path, *flags: str,
             **kw: bool) -> tuple[Run, Path]:
    report = tmp_path / "out" / "report.jsonl"
    report.parent.mkdir()
    plan = _plan(tmp_path, proxy.host, ns)
    return Run("publish", "--json", "--report", str(report), *flags, str(plan), **kw), report


def _finish(run: Run) -> tuple[int, str, list[str]]:
    try:
        return run.finish()
    finally:
        run.kill()


def _check_published_tags(registry: RegistryServer, ns: str,
                          results: list[dict[str, object]]) -> None:
    """Published lists: every tag at the list's digest. Others: any tag is complete."""
    tags = list_tags(registry.host, ns, N)
    found = TagChecker(registry.host).tags([t for group in tags for t in group])
    for result, group in zip(results, tags, strict=True):
        if result["status"] != "failed":
            assert [found[t] for t in group] == [result["digest"]] * 3, result


# ---------------------------------------------------------------------- publish: start-up


@pytest.mark.parametrize(("module", "signum"), [
    ("asyncio", SIGINT),
    ("typer", SIGTERM),
    ("manyfest.cli.progress", SIGINT),
    ("aiohttp", SIGTERM),
    ("manyfest.cli.main", SIGTERM),
])
def test_publish_interrupted_during_startup(
    module: str, signum: int, registry: RegistryServer, proxy: QuirkProxy, seeded: str,
    ns: str, tmp_path: Path, cache_dir: Path, store: Path,
) -> None:
    run, report = _publish(proxy, ns, tmp_path, importtime=True)
    run.wait_import(module)
    run.send(signum)
    code, out, lines = _finish(run)
    assert code == expect_code(signum)
    line = assert_one_line(lines, signum)
    if "during start-up" in line:
        # Start-up outlasted the grace period: ended before the plan was read, so nothing is
        # known and nothing is written.
        assert line.endswith("nothing was written; re-run the command"), line
        assert out == ""
        assert not report.exists()
    else:
        # The command handled the signal (recorded during start-up, or during the run):
        # the full report, with every list not published or some published.
        results = check_reports(out, report, N, signum, line)
        _check_published_tags(registry, ns, results)
    _no_temporaries(report.parent)
    check_cache(cache_dir)
    assert snapshot(store) == {}


# ---------------------------------------------------------------------- publish: the run


@pytest.mark.parametrize("signum", [SIGINT, SIGTERM])
def test_publish_interrupted_while_resolving(
    signum: int, registry: RegistryServer, proxy: QuirkProxy, seeded: str, ns: str,
    tmp_path: Path, cache_dir: Path, store: Path,
) -> None:
    """With ``--fail-fast`` every source is resolved before the first write: a signal while
    one is read stops the run with nothing written."""
    hold = Hold(proxy, "GET", f"/{SRC}/app-win/manifests/1.{N - 1}")
    proxy.before.append(hold)
    run, report = _publish(proxy, ns, tmp_path, "--fail-fast")
    hold.wait_held()  # phase 1 (resolve, read only) cannot end while this GET is held
    run.send(signum)
    code, out, lines = _finish(run)
    hold.release()
    assert code == expect_code(signum)
    line = assert_one_line(lines, signum)
    results = check_reports(out, report, N, signum, line)
    name = signal.Signals(signum).name
    assert line.startswith(f"interrupted by {name}: 0 of {N} lists published (0 created, ")
    assert all(r["error"] == f"not published: interrupted by {name} before it was published; "
               "re-run to finish" for r in results)
    found = TagChecker(registry.host).tags([t for g in list_tags(registry.host, ns, N) for t in g])
    assert set(found.values()) == {""}, "a tag was written during the resolve phase"
    check_cache(cache_dir)  # what was resolved before the signal is kept, each file whole
    _no_temporaries(report.parent)
    assert snapshot(store) == {}


def test_publish_interrupted_while_the_last_source_resolves(
    registry: RegistryServer, proxy: QuirkProxy, seeded: str, ns: str, tmp_path: Path,
    cache_dir: Path, store: Path,
) -> None:
    """Without ``--fail-fast`` lists are published as their own sources resolve: a signal
    while the last list's source is read leaves that list not published (none of its tags
    written) and every list the report calls published complete."""
    hold = Hold(proxy, "GET", f"/{SRC}/app-win/manifests/1.{N - 1}")
    proxy.before.append(hold)
    run, report = _publish(proxy, ns, tmp_path)
    hold.wait_held()
    run.send(SIGINT)
    code, out, lines = _finish(run)
    hold.release()
    assert code == expect_code(SIGINT)
    line = assert_one_line(lines, SIGINT)
    results = check_reports(out, report, N, SIGINT, line)
    assert line.startswith("interrupted by SIGINT: "), line
    last = results[-1]
    assert last["status"] == "failed"
    assert last["error"] == ("not published: interrupted by SIGINT before it was published; "
                             "re-run to finish")
    assert all(r["error"].startswith("not published: interrupted by SIGINT")
               for r in results if r["status"] == "failed")
    found = TagChecker(registry.host).tags(list_tags(registry.host, ns, N)[-1])
    assert set(found.values()) == {""}, "a tag of the list whose source was held was written"
    _check_published_tags(registry, ns, results)
    check_cache(cache_dir)
    _no_temporaries(report.parent)
    assert snapshot(store) == {}


@pytest.mark.parametrize(("k", "signum"), [(1, SIGTERM), (N // 2, SIGINT), (N - 1, SIGTERM)])
def test_publish_interrupted_after_k_lists(
    k: int, signum: int, registry: RegistryServer, proxy: QuirkProxy, seeded: str, ns: str,
    tmp_path: Path, cache_dir: Path, store: Path,
) -> None:
    run, report = _publish(proxy, ns, tmp_path)
    run.wait_progress(k)
    run.send(signum)
    code, out, lines = _finish(run)
    assert code == expect_code(signum)
    line = assert_one_line(lines, signum)
    results = check_reports(out, report, N, signum, line)
    finished = [r for r in results if r["status"] != "failed"]
    assert len(finished) >= k
    # One progress line per finished list, none for the lists the interrupt stopped.
    progress = [ln for ln in lines if ln.startswith("[") and f"/{N}] " in ln]
    assert len(progress) == len(finished)
    assert {ln.split()[2] for ln in progress} == {r["target"] for r in finished}
    _check_published_tags(registry, ns, results)
    check_cache(cache_dir)
    _no_temporaries(report.parent)
    assert snapshot(store) == {}


def test_publish_interrupted_with_a_list_put_in_flight(
    registry: RegistryServer, proxy: QuirkProxy, seeded: str, ns: str, tmp_path: Path,
    cache_dir: Path, store: Path,
) -> None:
    target = f"{proxy.host}/{ns}/app:1.3"
    hold = Hold(proxy, "PUT", f"/{ns}/app/manifests/1.3")
    proxy.before.append(hold)
    run, report = _publish(proxy, ns, tmp_path)
    hold.wait_held()  # the first tag PUT of list 3 is in flight (its children are in)
    run.send(SIGTERM)
    code, out, lines = _finish(run)
    assert code == 143
    line = assert_one_line(lines, SIGTERM)
    results = check_reports(out, report, N, SIGTERM, line)
    [held] = [r for r in results if r["target"] == target]
    assert held["status"] == "failed"
    assert f"the PUT of {target} was in flight (it may have landed)" in held["error"]
    # the held PUT at least; others may have been in flight too
    assert re.search(r"\b\d+ tag PUTs? cut off in flight", line), line
    # Whether the held PUT lands now or never, every tag points at a complete list.
    hold.release()
    _check_published_tags(registry, ns, results)
    check_cache(cache_dir)
    _no_temporaries(report.parent)


# ---------------------------------------------------------------------- other commands


@pytest.mark.parametrize("signum", [SIGINT, SIGTERM])
def test_create_interrupted_writes_nothing(
    signum: int, proxy: QuirkProxy, seeded: str, ns: str, store: Path, cache_dir: Path,
) -> None:
    hold = Hold(proxy, "GET", f"/{SRC}/app-arm64/manifests/1.0")
    proxy.before.append(hold)
    run = Run("create", f"{proxy.host}/{ns}/app:1", f"{proxy.host}/{SRC}/app-amd64:1.0",
              f"{proxy.host}/{SRC}/app-arm64:1.0")
    hold.wait_held()
    run.send(signum)
    code, out, lines = _finish(run)
    assert code == expect_code(signum)
    line = assert_one_line(lines, signum)
    assert line.endswith(f"nothing was written to the local store; re-run to create "
                         f"{proxy.host}/{ns}/app:1")
    assert out == ""
    assert {k for k in snapshot(store) if not k.startswith(".manyfest.lock")} == set()
    check_cache(cache_dir)


def _local_list(proxy: QuirkProxy, ns: str) -> str:
    target = f"{proxy.host}/{ns}/app:1"
    manyfest("create", target, f"{proxy.host}/{SRC}/app-amd64:1.1",
             f"{proxy.host}/{SRC}/app-arm64:1.1", check=True)
    return target


@pytest.mark.parametrize(("stage", "signum"), [("child", SIGINT), ("list", SIGTERM)])
def test_push_interrupted(
    stage: str, signum: int, registry: RegistryServer, proxy: QuirkProxy, seeded: str, ns: str,
    store: Path, cache_dir: Path,
) -> None:
    target = _local_list(proxy, ns)
    before = snapshot(store)
    fragment = f"/{ns}/app/manifests/" + ("sha256:" if stage == "child" else "1")
    hold = Hold(proxy, "PUT", fragment)
    proxy.before.append(hold)
    run = Run("push", target)
    hold.wait_held()
    run.send(signum)
    code, out, lines = _finish(run)
    assert code == expect_code(signum)
    line = assert_one_line(lines, signum)
    assert out == ""
    assert snapshot(store) == before  # the local list is kept
    checker = TagChecker(registry.host)
    tag = f"{registry.host}/{ns}/app:1"
    if stage == "child":
        assert line.endswith(f"{target} was left where it was (the list was not PUT); "
                             "re-run to push")
        assert checker.tags([tag]) == {tag: ""}
        hold.release()
    else:
        assert f"the list PUT to {target} was in flight" in line
        hold.release()
        checker.tags([tag])  # absent, or a complete list
    check_cache(cache_dir)
    # A re-run finishes the push.
    again = manyfest("push", target, check=True)
    digest = again.stdout.splitlines()[-1]
    assert checker.tags([tag]) == {tag: digest}


def test_inspect_interrupted(proxy: QuirkProxy, seeded: str, store: Path) -> None:
    hold = Hold(proxy, "GET", f"/{SRC}/app-amd64/manifests/1.2")
    proxy.before.append(hold)
    run = Run("inspect", f"{proxy.host}/{SRC}/app-amd64:1.2")
    hold.wait_held()
    run.send(SIGINT)
    code, out, lines = _finish(run)
    assert code == 130
    line = assert_one_line(lines, SIGINT)
    assert line.endswith("stopped (it only reads: nothing was changed)")
    assert out == ""
    assert snapshot(store) == {}


@pytest.mark.parametrize(("command", "signum"), [("rm", SIGTERM), ("annotate", SIGINT)])
def test_store_commands_interrupted_at_startup(
    command: str, signum: int, proxy: QuirkProxy, seeded: str, ns: str, store: Path,
) -> None:
    target = _local_list(proxy, ns)
    before = snapshot(store)
    args = ["rm", target] if command == "rm" else [
        "annotate", target, f"{proxy.host}/{SRC}/app-amd64:1.1", "--os-features", "sse4"]
    run = Run(*args, importtime=True)
    run.wait_import("typer")
    run.send(signum)
    code, _, lines = _finish(run)
    assert code == expect_code(signum)
    line = assert_one_line(lines, signum)
    after = snapshot(store)
    if "during start-up" in line:
        assert after == before
    elif command == "rm":
        assert line.endswith("rm had already run: 1 of 1 local list removed")
        assert not any(k.startswith(ns) for k in after)
    else:
        assert line.endswith(f"in {target} had already been annotated")
        assert set(after) == set(before)
        assert after != before


# ---------------------------------------------------------------------- the mechanism


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    """A second signal while a command stops ends the process at once with the first code,
    removing the temporary file of an atomic write it cut short.

    A real command stops within milliseconds, so the state "stopping" is held here by a
    process that runs the CLI's own handler and never stops by itself.
    """
    partial = tmp_path / ".report.jsonl.tmp"
    code = (
        "import sys, time\n"
        "from manyfest import interrupts\n"
        "interrupts.GRACE = 3600.0  # this test is about the second signal\n"
        "interrupts.install()\n"
        "interrupts.command_started(again='stopped at once; re-run to finish')\n"
        "print('ready', file=sys.stderr, flush=True)\n"
        "while interrupts.received() is None:\n"
        "    time.sleep(0.01)\n"
        f"with interrupts.temporary({str(partial)!r}):\n"
        f"    open({str(partial)!r}, 'wb').write(b'half')\n"
        "    print('stopping', file=sys.stderr, flush=True)\n"
        "    while True:\n"
        "        time.sleep(1)\n"
    )
    run = Run(argv=[sys.executable, "-c", code])
    run.wait_line(lambda line: line == "ready", "ready")
    run.send(SIGTERM)
    run.wait_line(lambda line: line == "stopping", "stopping")
    assert partial.exists()
    run.send(SIGINT)
    status, _, lines = _finish(run)
    assert status == 143
    assert lines[-1] == ("interrupted by SIGTERM: SIGINT received while stopping; stopped at "
                         "once; re-run to finish")
    assert not any("Traceback" in line for line in lines)
    assert not partial.exists()


@pytest.mark.parametrize("started", [False, True])
def test_grace_period_ends_a_process_that_does_not_stop(tmp_path: Path, started: bool) -> None:
    """A process that has not ended GRACE s after the signal (start-up still importing, or a
    command blocked) is ended at once: the signal's code, one line, temporaries removed."""
    partial = tmp_path / ".entry.tmp"
    code = (
        "import sys, time\n"
        "from manyfest import interrupts\n"
        "interrupts.install()\n"
        + ("interrupts.command_started(again='stopped at once; re-run to finish')\n"
           if started else "")
        + f"with interrupts.temporary({str(partial)!r}):\n"
        f"    open({str(partial)!r}, 'wb').write(b'half')\n"
        "    print('ready', file=sys.stderr, flush=True)\n"
        "    while True:\n"
        "        time.sleep(1)\n"
    )
    run = Run(argv=[sys.executable, "-c", code])
    run.wait_line(lambda line: line == "ready", "ready")
    run.send(SIGINT)
    status, _, lines = _finish(run)  # ends by itself: no second signal
    assert status == 130
    expected = ("interrupted by SIGINT: not stopped 1.5 s after the signal; stopped at once; "
                "re-run to finish") if started else (
                "interrupted by SIGINT: during start-up, before any work: nothing was written; "
                "re-run the command")
    assert lines == ["ready", expected]
    assert not partial.exists()


def test_console_script_installs_handlers_before_heavy_imports(
    proxy: QuirkProxy, seeded: str,
) -> None:
    """pyproject's console script is the entry module; it runs, and its handlers come first."""
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["manyfest"].partition(":")
    assert (module, function) == ("manyfest.cli.entry", "main")
    main = (  # __import__: an import statement's path, which -X importtime reports
        "import sys\n"
        "sys.argv[0] = 'manyfest'\n"
        f"getattr(__import__({module!r}, fromlist=[{function!r}]), {function!r})()\n"
    )
    version = subprocess.run([sys.executable, "-c", main, "--version"], capture_output=True,
                             text=True, check=False, timeout=120)
    assert (version.returncode, version.stdout) == (0, "manyfest 0.1.0\n"), version.stderr
    # A SIGTERM once aiohttp is imported: still in start-up, or in the held GET of inspect;
    # either way 143 and one line, since the handlers came before aiohttp, rich and typer.
    hold = Hold(proxy, "GET", f"/{SRC}/app-arm/manifests/1.2")
    proxy.before.append(hold)
    run = Run("inspect", f"{proxy.host}/{SRC}/app-arm:1.2",
              argv=[sys.executable, "-X", "importtime", "-c", main])
    run.wait_import("aiohttp")
    run.send(SIGTERM)
    status, out, lines = _finish(run)
    assert status == 143
    assert out == ""
    assert_one_line(lines, SIGTERM)
    names = [ln.rsplit("|", 1)[-1].strip() for ln in lines if ln.startswith("import time:")]
    entry = names.index("manyfest.cli.entry")
    assert names.index("manyfest.interrupts") < entry
    assert not {"aiohttp", "typer", "rich", "anyio", "asyncio"} & set(names[:entry])


# ---------------------------------------------------------------------- the library


def test_library_stop_request(registry: RegistryServer, seeded: str, ns: str) -> None:
    """Session.publish(stop=...) ends early with a partial report (no signal involved)."""
    import anyio

    import manyfest
    from manyfest.cache import FactCache
    from manyfest.ops.publish import StopRequest

    plan = manyfest.parse_plan(plan_text(registry.host, SRC, ns, N))
    stop = StopRequest()

    def on_event(event: manyfest.Event) -> None:
        if event.kind == "finished" and not stop.requested():
            stop.stop("a test")

    async def main() -> manyfest.PublishReport:
        async with manyfest.Session(on_event=on_event, cache=FactCache(enabled=False)) as s:
            return await s.publish(plan, stop=stop)

    report = anyio.run(main)
    assert report.interrupted == "a test"
    assert [str(r.target) for r in report.results] == [str(p.target) for p in plan]
    published = report.published()
    assert published >= 1
    assert report.not_published == N - published
    assert report.summary()["interrupted"] == "a test"
    for r in report.results:
        if r.status == "failed":
            assert r.error is not None
            assert r.error.message.startswith("not published: interrupted by a test")
    _check_published_tags(registry, ns, [
        {"status": r.status, "digest": r.digest} for r in report.results
    ])


def test_run_called_directly_handles_signals(proxy: QuirkProxy, seeded: str) -> None:
    """``manyfest.cli.main.run()`` (what a console script installed before the entry module
    existed calls) installs the handlers too: SIGTERM in a held GET is 143 and one line."""
    hold = Hold(proxy, "GET", f"/{SRC}/app-arm64/manifests/1.3")
    proxy.before.append(hold)
    code = "import sys\nsys.argv[0] = 'manyfest'\nfrom manyfest.cli.main import run\nrun()\n"
    run = Run("inspect", f"{proxy.host}/{SRC}/app-arm64:1.3", argv=[sys.executable, "-c", code])
    hold.wait_held()
    run.send(SIGTERM)
    status, out, lines = _finish(run)
    assert status == 143
    assert out == ""
    assert assert_one_line(lines, SIGTERM).endswith(
        "stopped (it only reads: nothing was changed)")
