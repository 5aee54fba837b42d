"""Registries with immutable tags, ``--existing fail|skip|overwrite`` and ``--digests FILE``.

Unit-level tests run the engine and ``ops.publish`` against tests/test_engine.py's in-memory
registry, taught to refuse moving a tag that exists as Amazon ECR (``400 TAG_INVALID``) and
Harbor (``412 PRECONDITION``) answer, with their bodies (tests/quirk_proxy.py, where the
end-to-end tests below use the same answers in front of the real registry). The registry's
refusal goes through the real error mapping (:func:`manyfest.transport.errormap.
registry_error`), so the line a user reads is the one the CLI prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from multidict import CIMultiDict

from manyfest.cli.progress import list_line
from manyfest.content import Manifest
from manyfest.engine import Engine, ListResult, PublishOptions
from manyfest.errors import (
    IMMUTABLE_HINT,
    OVERWRITE_HINT,
    AuthorizationError,
    ExistingTagError,
    ImmutableTagError,
    ManifestRejectedError,
)
from manyfest.ops.digests import digest_lines, list_lines, published
from manyfest.ops.plan import PlanList, load
from manyfest.ops.publish import PublishReport, publish, result_json
from manyfest.reference import Reference
from manyfest.transport import RequestStats, Settings
from manyfest.transport.errormap import registry_error
from manyfest.transport.response import Response
from tests.quirk_proxy import TagRefusal, ecr_immutable, harbor_immutable
from tests.test_engine import HOST, FakeRegistry, _images, _publish, _ref, _run

LIST_TYPES = ("application/vnd.oci.image.index.v1+json",
              "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass
class Immutable(FakeRegistry):
    """The in-memory registry with immutable tags in ``immutable`` repositories: a PUT by
    tag of a tag that exists with another digest (``same_too``: with any digest, as
    Harbor) is refused with ``answer``'s status and body, mapped as the transport maps a
    real answer."""

    immutable: set[str] = field(default_factory=set)
    answer: TagRefusal = ecr_immutable
    same_too: bool = False

    def __post_init__(self) -> None:
        self.transport = SimpleNamespace(settings=Settings(), total=RequestStats(),
                                         registry_stats=dict)

    async def put_manifest(self, ref: Reference, manifest: Manifest, *,
                           built: bool = False) -> str:
        held = self.manifests.get(ref.repository, {}).get(ref.tag or "")
        if (ref.tag and not ref.digest and ref.repository in self.immutable
                and held is not None and (self.same_too or held.digest != manifest.digest)):
            self.calls.append(("PUT", ref.repository, ref.reference))
            status, headers, body = self.answer(ref.repository, ref.tag)
            url = f"http://{HOST}/v2/{ref.repository}/manifests/{ref.tag}"
            raise registry_error(f"push list {ref} ({manifest.media_type})", "PUT",
                                 Response(status, CIMultiDict(headers), body, url))
        return await super().put_manifest(ref, manifest, built=built)


def _tag_puts(fake: FakeRegistry) -> list[tuple[str, str]]:
    return [(r, d) for m, r, d in fake.calls if m == "PUT" and not d.startswith("sha256:")]


def _writes(fake: FakeRegistry) -> list[tuple[str, str, str]]:
    return [c for c in fake.calls if c[0] in ("PUT", "mount", "copy")]


def _plan(tmp_path: Path, documents: list[tuple[str, list[str], list[Reference]]]
          ) -> list[PlanList]:
    """manifest-tool documents ``(target, extra tags, sources)``."""
    docs = []
    for target, tags, refs in documents:
        lines = [f"image: {HOST}/{target}"]
        if tags:
            lines.append(f"tags: [{', '.join(tags)}]")
        lines += ["manifests:", *(f"  - image: {r}" for r in refs)]
        docs.append("\n".join(lines))
    path = tmp_path / "plan.yaml"
    path.write_text("\n---\n".join(docs) + "\n")
    return load(path)


def _seed_other(fake: FakeRegistry, repository: str, tags: list[str], seed: str) -> str:
    """Publish another list (of images made with ``seed``) at ``tags`` of ``repository``
    (mutable for the moment); returns its digest."""
    immutable = getattr(fake, "immutable", set())
    was = set(immutable)
    immutable.clear()
    refs = _images(fake, seed)
    first, *rest = tags
    result = _run(lambda: _publish(Engine(fake.client()), f"{repository}:{first}", refs,
                                   extra_tags=rest))
    immutable.update(was)
    assert result.status in ("created", "updated"), result.error
    fake.calls.clear()
    return str(result.digest)


def _go(fake: FakeRegistry, plan: list[PlanList], **opts: Any) -> PublishReport:
    return _run(lambda: publish(Engine(fake.client()), plan, options=PublishOptions(**opts)))


# ------------------------------------------------------------------ children never by tag


@pytest.mark.parametrize("opts", [{}, {"atomic": True}, {"existing": "skip"},
                                  {"unchanged_by": "children"}], ids=str)
def test_children_are_never_put_by_tag(tmp_path: Path, opts: dict[str, Any]) -> None:
    fake = Immutable()
    refs = _images(fake, "bytag")
    plan = _plan(tmp_path, [("app:1.0", ["1", "latest"], refs), ("app:same", [], refs),
                            ("other:1.0", ["1"], refs)])
    report = _go(fake, plan, **opts)
    assert [r.status for r in report.results] == ["created"] * 3
    tag_puts = _tag_puts(fake)
    assert sorted(tag_puts) == sorted([("app", "1.0"), ("app", "1"), ("app", "latest"),
                                       ("app", "same"), ("other", "1.0"), ("other", "1")])
    for repository, tag in tag_puts:  # every PUT by tag put a list
        assert fake.manifests[repository][tag].media_type in LIST_TYPES
    children = {m.digest for r in refs for m in [fake.manifests[r.repository]["1"]]}
    child_puts = [(r, d) for m, r, d in fake.calls if m == "PUT" and d in children]
    assert sorted(child_puts) == sorted((repo, d) for repo in ("app", "other") for d in children)


# ------------------------------------------------------------------ immutable refusals


def test_ecr_refusal_fails_the_list_in_the_registrys_words(tmp_path: Path) -> None:
    fake = Immutable(immutable={"app"})
    old = _seed_other(fake, "app", ["1.0"], "old")
    refs = _images(fake, "new")
    plan = _plan(tmp_path, [("app:1.0", [], refs), ("app:2.0", [], refs),
                            ("mutable:1.0", [], refs)])
    report = _go(fake, plan)
    first, second, third = report.results
    assert (first.status, second.status, third.status) == ("failed", "created", "created")
    err = first.error
    assert isinstance(err, ImmutableTagError)
    assert (err.status, err.codes) == (400, {"TAG_INVALID"})
    assert err.message == (
        f"push list {HOST}/app:1.0: the tag holds {old}, and the registry refuses to move it "
        f"to {first.digest}: registry answered 400 (TAG_INVALID: The image tag '1.0' already "
        "exists in the 'app' repository and cannot be overwritten because the tag is "
        "immutable.)")
    assert err.hint == IMMUTABLE_HINT
    assert "--existing skip" in err.one_line()
    assert first.existing == {"1.0": old}
    assert result_json(first)["existing"] == {"1.0": old}
    assert "existing" not in result_json(second)
    assert fake.manifests["app"]["1.0"].digest == old  # left where it was
    assert fake.manifests["app"]["2.0"].digest == first.digest == second.digest


def test_harbor_refusal_is_412_and_a_rerun_of_the_same_content_writes_nothing(
        tmp_path: Path) -> None:
    fake = Immutable(immutable={"app"}, answer=harbor_immutable, same_too=True)
    old = _seed_other(fake, "app", ["1.0"], "old")
    refs = _images(fake, "new")
    plan = _plan(tmp_path, [("app:1.0", ["1.0-b"], refs)])
    report = _go(fake, plan)
    (r,) = report.results
    assert r.status == "failed"
    assert isinstance(r.error, ImmutableTagError)
    assert r.error.status == 412
    assert r.error.codes == {"PRECONDITION"}
    assert ("(PRECONDITION: Failed to process request due to 'app:1.0' configured as "
            "immutable.)") in r.error.message
    assert r.error.hint == IMMUTABLE_HINT
    assert r.existing == {"1.0": old}
    # Harbor refuses a PUT of the same manifest at an immutable tag too: the tag HEAD
    # finds the list there and nothing is PUT.
    fake.calls.clear()
    again = _go(fake, _plan(tmp_path, [("app:2.0", [], refs)]))
    assert again.results[0].status == "created"
    fake.calls.clear()
    rerun = _go(fake, _plan(tmp_path, [("app:2.0", [], refs)]))
    assert rerun.results[0].status == "unchanged"
    assert _writes(fake) == []


def test_a_refusal_without_immutability_words_keeps_its_class_unless_it_refuses_overwrite(
        tmp_path: Path) -> None:
    def forbidden(repository: str, tag: str) -> tuple[int, dict[str, str], bytes]:
        body = {"errors": [{"code": "DENIED", "message": "requested access to the resource "
                            "is denied", "detail": {"tag": tag}}]}
        return 403, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def invalid(repository: str, tag: str) -> tuple[int, dict[str, str], bytes]:
        body = {"errors": [{"code": "MANIFEST_INVALID", "message": "manifest invalid"}]}
        return 400, {"Content-Type": "application/json"}, json.dumps(body).encode()

    fake = Immutable(immutable={"app"}, answer=forbidden)
    old = _seed_other(fake, "app", ["1.0"], "old")
    refs = _images(fake, "new")
    (r,) = _go(fake, _plan(tmp_path, [("app:1.0", [], refs)])).results
    assert type(r.error) is AuthorizationError  # a 403 without words: maybe a permission
    assert '(DENIED: requested access to the resource is denied (detail: {"tag":"1.0"}))' \
        in r.error.message
    assert r.existing == {}
    assert old

    fake.answer = invalid  # a 400 that says nothing of overwriting: the registry's class
    (r,) = _go(fake, _plan(tmp_path, [("app:1.0", [], refs)])).results
    assert type(r.error) is ManifestRejectedError
    assert r.existing == {}


def test_a_refusal_to_overwrite_without_immutability_gets_the_overwrite_advice(
        tmp_path: Path) -> None:
    """A 403 whose words say overwrite but not immutable (Artifactory without the Delete
    permission) is a refused overwrite with the overwrite advice, not the immutable one."""
    def artifactory(repository: str, tag: str) -> tuple[int, dict[str, str], bytes]:
        body = {"errors": [{"code": "DENIED", "message": "Not enough permissions to overwrite "
                            f"artifact 'docker-local:{repository}/{tag}/manifest.json' (user "
                            "'ci' needs DELETE permission)."}]}
        return 403, {"Content-Type": "application/json"}, json.dumps(body).encode()

    fake = Immutable(immutable={"app"}, answer=artifactory)
    old = _seed_other(fake, "app", ["1.0"], "old")
    refs = _images(fake, "new")
    (r,) = _go(fake, _plan(tmp_path, [("app:1.0", [], refs)])).results
    assert type(r.error) is ImmutableTagError
    assert r.existing == {"1.0": old}
    assert r.error.hint == OVERWRITE_HINT != IMMUTABLE_HINT
    assert r.error.one_line() == (
        f"push list {HOST}/app:1.0: the tag holds {old}, and the registry refuses to move it "
        f"to {r.digest}: registry answered 403 (DENIED: Not enough permissions to overwrite "
        "artifact 'docker-local:app/1.0/manifest.json' (user 'ci' needs DELETE permission).); "
        f"{OVERWRITE_HINT}")


def test_a_403_on_a_new_tag_is_an_authorization_error() -> None:
    err = registry_error("push list x", "PUT", Response(
        403, CIMultiDict(), b'{"errors":[{"code":"DENIED","message":"no"}]}', "http://h/v2/"))
    assert isinstance(err, AuthorizationError)
    fake = Immutable()
    refs = _images(fake, "authz")
    engine = Engine(fake.client())

    async def go() -> Any:
        listed = await _publish(engine, "app:1", refs)
        assert listed.status == "created"
        assert isinstance(err, AuthorizationError)
        return await engine.tag_refusal(_ref("app:new"), fake.manifests["app"]["1"], err,
                                        {"new": ""})

    assert _run(go) is err


def test_push_without_heads_heads_the_tag_after_a_refusal() -> None:
    fake = Immutable(immutable={"app"})
    old = _seed_other(fake, "app", ["1"], "old")
    refs = _images(fake, "new")
    r = _run(lambda: _publish(Engine(fake.client()), "app:1", refs,
                              options=PublishOptions(skip_unchanged=False)))
    assert r.status == "failed"
    assert isinstance(r.error, ImmutableTagError)
    assert r.existing == {"1": old}
    assert [c for c in fake.calls if c[1] == "app" and c[2] == "1"] == [
        ("PUT", "app", "1"), ("HEAD", "app", "1")]  # one HEAD, after the refusal


# ------------------------------------------------------------------ --existing fail


def test_existing_fail_fails_the_list_before_any_write(tmp_path: Path) -> None:
    fake = Immutable()
    old = _seed_other(fake, "app", ["1"], "old")
    refs = _images(fake, "new")
    plan = _plan(tmp_path, [("app:1.0", ["1"], refs), ("app:2.0", [], refs)])
    dry = _go(fake, plan, existing="fail", dry_run=True)
    assert [r.status for r in dry.results] == ["failed", "created"]
    assert _writes(fake) == []
    report = _go(fake, plan, existing="fail")
    first, second = report.results
    assert (first.status, second.status) == ("failed", "created")
    assert isinstance(first.error, ExistingTagError)
    assert first.error.message == (
        f"{HOST}/app:1 holds {old}, not this list's {first.digest}: --existing fail leaves "
        "the list unpublished (nothing was written)")
    assert first.existing == {"1": old}
    assert "1.0" not in fake.manifests["app"]  # its new tag did not move either
    assert fake.manifests["app"]["1"].digest == old
    assert [t for r, t in _tag_puts(fake)] == ["2.0"]


# ------------------------------------------------------------------ --existing skip


def test_existing_skip_leaves_such_tags_and_moves_the_others(tmp_path: Path) -> None:
    fake = Immutable(immutable={"app"})
    old = _seed_other(fake, "app", ["1.0", "1", "v1"], "old")
    refs = _images(fake, "new")
    plan = _plan(tmp_path, [("app:1.0", ["1", "latest"], refs), ("app:1.1", ["v1"], refs)])
    dry = _go(fake, plan, existing="skip", dry_run=True)
    assert _writes(fake) == []
    a, b = dry.results
    assert a.status == "created"
    assert b.status == "created"
    def keep(tag: str) -> str:
        return f"keep {HOST}/app:{tag} at {old} (--existing skip: it holds another list)"

    assert [x for x in a.actions if x.startswith(("put ", "keep "))] == [
        f"put {HOST}/app:latest -> {a.digest} (new tag)", keep("1.0"), keep("1")]
    assert b.actions == [f"put {HOST}/app:1.1 -> {b.digest} (new tag)", keep("v1")]

    report = _go(fake, plan, existing="skip", verify=True)
    a, b = report.results
    assert (a.status, b.status) == ("created", "created")  # as the first tag written
    assert a.old_digest == old
    assert b.old_digest == ""
    assert (a.existing, b.existing) == ({"1.0": old, "1": old}, {"v1": old})
    assert a.verified
    assert b.verified
    assert sorted(t for _, t in _tag_puts(fake)) == ["1.1", "latest"]
    assert fake.manifests["app"]["1.0"].digest == fake.manifests["app"]["1"].digest == old
    assert result_json(a)["existing"] == {"1.0": old, "1": old}
    # The line names the tags kept: "created app:1.0" alone would say 1.0 moved.
    line = list_line(a, 1, 2, dry_run=False)[0]
    assert line.startswith(f"[1/2] created {HOST}/app:1.0 {a.digest} (")
    assert line.endswith(f"; kept 1.0 at {old} (--existing skip); kept 1 at {old} "
                         "(--existing skip))")

    # Every tag of a list held by another list: nothing written, the list `unchanged`
    # (none of its tags changed), out of --digests.
    fake.calls.clear()
    (r,) = _go(fake, _plan(tmp_path, [("app:1.0", ["1"], refs)]), existing="skip").results
    assert r.status == "unchanged"
    assert r.existing == {"1.0": old, "1": old}
    assert list_line(r, 1, 1, dry_run=False)[0].endswith(
        f"; kept 1.0 at {old} (--existing skip); kept 1 at {old} (--existing skip))")
    assert _writes(fake) == []
    assert not published(r)


def test_existing_skip_with_unchanged_by_children_and_atomic(tmp_path: Path) -> None:
    fake = Immutable(immutable={"app"})
    old = _seed_other(fake, "app", ["1.0"], "old")
    refs = _images(fake, "new")
    plan = _plan(tmp_path, [("app:1.0", ["1"], refs), ("app:2.0", [], refs)])
    report = _go(fake, plan, existing="skip", unchanged_by="children", atomic=True)
    a, b = report.results
    assert (a.status, b.status) == ("created", "created"), (a.error, b.error)
    assert a.existing == {"1.0": old}
    assert b.existing == {}
    assert a.atomic
    assert report.atomic is not None
    assert report.atomic["outcome"] == "published"
    assert fake.manifests["app"]["1.0"].digest == old
    assert fake.manifests["app"]["1"].digest == fake.manifests["app"]["2.0"].digest == a.digest


def test_atomic_immutable_refusal_in_phase_2_rolls_back(tmp_path: Path) -> None:
    fake = Immutable(immutable={"frozen"})
    frozen_old = _seed_other(fake, "frozen", ["1.0"], "old")
    moving_old = _seed_other(fake, "moving", ["1.0"], "old")
    refs = _images(fake, "new")
    plan = _plan(tmp_path, [("moving:1.0", [], refs), ("frozen:1.0", [], refs)])
    report = _go(fake, plan, atomic=True)
    moving, frozen = report.results
    assert moving.status == frozen.status == "failed"
    assert report.atomic is not None
    assert report.atomic["outcome"] == "rolled back"
    assert report.atomic["failed_at"] == f"{HOST}/frozen:1.0"
    assert report.atomic_line.startswith(
        f"--atomic: phase 2 failed at {HOST}/frozen:1.0 (push list {HOST}/frozen:1.0: the tag "
        f"holds {frozen_old}, and the registry refuses to move it to ")
    assert "cannot be overwritten because the tag is immutable" in report.atomic_line
    assert frozen.error is not None
    assert IMMUTABLE_HINT in frozen.error.hint
    assert frozen.existing == {"1.0": frozen_old}
    assert fake.manifests["frozen"]["1.0"].digest == frozen_old
    assert fake.manifests["moving"]["1.0"].digest == moving_old  # never moved, or moved back
    assert moving.tag_digests == {"1.0": moving_old}

    # --existing fail under --atomic: phase 1 fails, no tag is PUT
    fake.calls.clear()
    failed = _go(fake, plan, atomic=True, existing="fail")
    assert failed.atomic is not None
    assert failed.atomic["outcome"] == "phase 1 failed"
    assert _tag_puts(fake) == []
    assert isinstance(failed.results[0].error, ExistingTagError)


# ------------------------------------------------------------------ --digests


def test_digest_lines_children_before_their_list_each_once_in_plan_order(
        tmp_path: Path) -> None:
    fake = Immutable()
    old = _seed_other(fake, "app", ["9"], "old")
    refs = _images(fake, "digests")
    children = [fake.manifests[r.repository]["1"].digest for r in refs]
    plan = _plan(tmp_path, [("other:1", [], refs), ("app:1", [], refs),
                            ("app:2", [], refs), ("app:9", [], refs),
                            ("app:bad", [], [_ref("missing:1")])])
    report = _go(fake, plan, existing="skip")
    statuses = [r.status for r in report.results]
    assert statuses == ["created", "created", "created", "unchanged", "failed"]
    digest = report.results[0].digest
    expected = [f"{HOST}/other@{c}" for c in children] + [f"{HOST}/other@{digest}"]
    expected += [f"{HOST}/app@{c}" for c in children] + [f"{HOST}/app@{digest}"]
    assert digest_lines(report.results) == expected
    assert report.results[3].existing == {"9": old}
    # Unchanged lists count (a signing step after a re-run sees the whole release).
    again = _go(fake, plan[:3])
    assert [r.status for r in again.results] == ["unchanged"] * 3
    assert digest_lines(again.results) == expected
    assert list_lines("h/r", ["sha256:a", "sha256:a"], "sha256:b") == [
        "h/r@sha256:a", "h/r@sha256:b"]


def test_digest_lines_leave_out_lists_not_published() -> None:
    target = _ref("app:1")
    ok = ListResult(target, ["1"], digest="sha256:" + "1" * 64, status="updated",
                    children=("sha256:" + "2" * 64,))
    failed = ListResult(_ref("app:2"), ["2"], digest="sha256:" + "3" * 64, status="failed")
    unbuilt = ListResult(_ref("app:3"), ["3"], status="unchanged")
    check: Callable[[ListResult], bool] = published
    assert [check(r) for r in (ok, failed, unbuilt)] == [True, False, False]
    assert digest_lines([failed, ok, unbuilt]) == [
        f"{HOST}/app@sha256:{'2' * 64}", f"{HOST}/app@sha256:{'1' * 64}"]


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_publish_on_an_ecr_like_registry_end_to_end(registry: Any, ns: str,
                                                    tmp_path: Path) -> None:
    from tests.helpers import PLATFORMS, head_digest, manyfest, seed
    from tests.quirk_proxy import ImmutableTags, ManifestPuts, QuirkProxy

    plats = PLATFORMS[:2]
    seed(registry.host, [(f"{ns}-src/app-{p.architecture}:{r}", p, f"{ns}{r}")
                         for p in plats for r in ("a", "b")])
    proxy = QuirkProxy(registry.host).start()
    try:
        frozen = ImmutableTags(proxy, repositories=(f"{ns}/frozen",))
        puts = ManifestPuts()
        proxy.before += [puts, frozen]

        def plan(release: str) -> Path:
            docs = [f"image: {proxy.host}/{ns}/{repo}:1.0\nmanifests:\n" + "".join(
                f"  - image: {proxy.host}/{ns}-src/app-{p.architecture}:{release}\n"
                for p in plats) for repo in ("frozen", "other")]
            path = tmp_path / f"{release}.yaml"
            path.write_text("---\n".join(docs))
            return path

        assert manyfest("publish", str(plan("a"))).returncode == 0
        old = head_digest(f"{registry.host}/{ns}/frozen:1.0")
        report, digests = tmp_path / "r.jsonl", tmp_path / "digests.txt"
        run = manyfest("publish", "--report", str(report), "--digests", str(digests),
                       str(plan("b")))
        assert run.returncode == 3, run.stderr
        assert (f"registry answered 400 (TAG_INVALID: The image tag '1.0' already exists in "
                f"the '{ns}/frozen' repository and cannot be overwritten because the tag is "
                "immutable.); the repository has immutable tags") in run.stderr
        rows = [json.loads(line) for line in report.read_text().splitlines()]
        assert [r["status"] for r in rows] == ["failed", "updated"]
        assert rows[0]["existing"] == {"1.0": old}
        assert frozen.refused == [f"{ns}/frozen:1.0"]
        assert head_digest(f"{registry.host}/{ns}/frozen:1.0") == old
        other = head_digest(f"{registry.host}/{ns}/other:1.0")
        children = [head_digest(f"{registry.host}/{ns}-src/app-{p.architecture}:b")
                    for p in plats]
        assert digests.read_text() == "".join(
            f"{proxy.host}/{ns}/other@{d}\n" for d in [*children, other])
        assert puts.by_tag(lists=False) == []  # children: by digest only
        assert puts.by_tag(lists=True)
    finally:
        proxy.stop()


@pytest.mark.slow
def test_push_existing_and_digests_end_to_end(registry: Any, ns: str, tmp_path: Path) -> None:
    """``push --existing fail|skip|overwrite`` and ``push --digests FILE`` on the real
    registry: a tag that holds another list is checked before any write (fail), left as it
    is (skip: an empty digest file), or moved (overwrite, the default: the children and the
    list in the file); ``--digests -`` is refused before any request (stdout carries push's
    own lines)."""
    from tests.helpers import PLATFORMS, head_digest, manyfest, seed

    plats = (PLATFORMS[0], PLATFORMS[2])
    digests = seed(registry.host, [(f"{ns}/app-{p.architecture}:{r}", p, f"{ns}{r}")
                                   for p in plats for r in ("a", "b")])
    target = f"{registry.host}/{ns}/app:1"

    def create(release: str) -> list[str]:
        refs = [f"{registry.host}/{ns}/app-{p.architecture}:{release}" for p in plats]
        manyfest("create", "--amend", target, *refs, check=True)
        return [digests[r.removeprefix(registry.host + "/")] for r in refs]

    create("a")
    first = manyfest("push", "--purge", target, check=True).stdout.splitlines()[-1]
    assert head_digest(target) == first
    b_children = create("b")
    out = tmp_path / "digests.txt"

    dash = manyfest("push", "--digests", "-", target)
    assert (dash.returncode, dash.stdout) == (2, "")
    assert dash.stderr == ("push --digests -: stdout carries push's own lines; give --digests "
                           "a file path\n")

    failed = manyfest("push", "--existing", "fail", "--digests", str(out), target)
    assert (failed.returncode, failed.stdout) == (1, "")
    listed = failed.stderr.split("not this list's ", 1)[-1][:71]  # checked when pushed
    assert failed.stderr.splitlines() == [
        f"{target} holds {first}, not this list's {listed}: --existing fail leaves the list "
        "unpublished (nothing was written); pass --existing skip to leave such tags as they "
        "are and move the others, or --existing overwrite to move them (refused by a "
        "registry with immutable tags)"]
    assert head_digest(target) == first
    assert not out.exists()

    skipped = manyfest("push", "--existing", "skip", "--digests", str(out), target)
    assert (skipped.returncode, skipped.stdout) == (0, "")
    assert skipped.stderr == (f"{target} holds {first}: left as it is (--existing skip); "
                              "nothing was pushed\n")
    assert head_digest(target) == first
    assert out.read_text() == ""  # nothing published: nothing to sign

    moved = manyfest("push", "--digests", str(out), target)
    assert moved.returncode == 0, moved.stderr
    second = moved.stdout.splitlines()[-1]
    name = f"{registry.host}/{ns}/app"
    assert moved.stdout == "".join(f"Pushed ref {name}@{d} with digest: {d}\n"
                                   for d in b_children) + f"{second}\n"
    assert head_digest(target) == second == listed != first
    assert out.read_text() == "".join(f"{name}@{d}\n" for d in [*b_children, second])

    again = manyfest("push", "--existing", "fail", "--digests", str(out), target)
    assert again.returncode == 0, again.stderr  # the tag holds this very list: no conflict
    assert out.read_text() == "".join(f"{name}@{d}\n" for d in [*b_children, second])


def test_digests_file_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    from manyfest.ops.digests import write

    work = tmp_path / "work"
    work.mkdir()
    target = work / "digests.txt"
    write(str(target), ["r/a@sha256:" + "1" * 64, "r/a@sha256:" + "2" * 64])
    assert target.read_text() == f"r/a@sha256:{'1' * 64}\nr/a@sha256:{'2' * 64}\n"
    write(str(target), [])
    assert target.read_bytes() == b""
    blocked = work / "dir"
    (blocked / "inside").mkdir(parents=True)  # a directory where the file would go
    with pytest.raises(IsADirectoryError):
        write(str(blocked), ["r/a@sha256:" + "3" * 64])
    assert sorted(p.name for p in work.iterdir()) == ["digests.txt", "dir"]  # no temp left
    assert target.read_bytes() == b""


@pytest.mark.slow
def test_publish_digests_with_since_lists_every_digest_the_tags_hold(
        registry: Any, ns: str, tmp_path: Path) -> None:
    """``--digests`` with ``--since``: lists the report proves unchanged are in the file with
    their children (what the tags hold now, for a signing step), as on a run that built
    them; ``--digests -`` writes the same lines on stdout, refused with ``--json``."""
    from tests.helpers import PLATFORMS, manyfest, seed

    plats = (PLATFORMS[0], PLATFORMS[2])
    digests = seed(registry.host, [(f"{ns}/src-{p.architecture}:1", p, ns) for p in plats])
    children = [digests[f"{ns}/src-{p.architecture}:1"] for p in plats]
    plan = tmp_path / "plan.yaml"
    plan.write_text("---\n".join(
        f"image: {registry.host}/{ns}/{repo}:1\nmanifests:\n" + "".join(
            f"  - image: {registry.host}/{ns}/src-{p.architecture}:1\n" for p in plats)
        for repo in ("one", "two")))
    report, first, second = (tmp_path / n for n in ("r.jsonl", "first.txt", "second.txt"))
    done = manyfest("publish", "--report", str(report), "--digests", str(first), str(plan))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["created", "created"]
    expected = "".join(f"{registry.host}/{ns}/{repo}@{d}\n" for repo, row in
                       zip(("one", "two"), rows, strict=True) for d in [*children, row["digest"]])
    assert first.read_text() == expected

    again = manyfest("publish", "--since", str(report), "--digests", str(second), str(plan))
    assert again.returncode == 0, again.stderr
    assert f"2 unchanged since {report}" in again.stderr
    assert second.read_text() == expected

    out = manyfest("publish", "--since", str(report), "--digests", "-", str(plan))
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected

    mixed = manyfest("publish", "--json", "--digests", "-", str(plan))
    assert (mixed.returncode, mixed.stdout) == (2, "")
    assert mixed.stderr == "--digests - and --json both write on stdout; give --digests a " \
        "file path\n"


# ------------------------------------------------------------------ copy --existing


def _copy_go(fake: FakeRegistry, src: str, dst: str, *, existing: str = "overwrite",
             dry_run: bool = False) -> ListResult:
    from manyfest.ops.copy import copy as run_copy
    from manyfest.ops.plan import check_copy

    plan = check_copy(f"{HOST}/{src}", [f"{HOST}/{dst}"])
    [result] = _run(lambda: run_copy(Engine(fake.client()), [plan], dry_run=dry_run,
                                     existing=existing))  # type: ignore[arg-type]
    return result


@pytest.mark.parametrize("existing", ["fail", "skip", "overwrite"])
def test_copy_existing_policies(existing: str) -> None:
    """``copy --existing``: a target tag holding another index is failed before any write
    (fail), kept (skip: ``unchanged``, ``existing`` names it), or moved (overwrite, the
    default); a tag already at the source's digest is ``unchanged`` whatever the policy."""
    from tests.test_copy import _fake_release

    fake = Immutable()
    new = _fake_release(fake, "staging", "1", "copy new")
    old = _fake_release(fake, "prod", "1", "copy old")
    fake.calls.clear()
    r = _copy_go(fake, "staging:1", "prod:1", existing=existing)
    assert r.old_digest == old.index.digest
    assert r.existing == ({} if existing == "overwrite" else {"1": old.index.digest})
    if existing == "fail":
        assert (r.status, type(r.error)) == ("failed", ExistingTagError)
        assert r.error is not None
        assert r.error.one_line() == (
            f"{HOST}/prod:1 holds {old.index.digest}, not {HOST}/staging:1's "
            f"{new.index.digest}: --existing fail leaves the copy undone (nothing was "
            "written); " + ExistingTagError.default_hint)
    else:
        assert (r.status, r.error) == ("unchanged" if existing == "skip" else "updated", None)
    assert fake.manifests["prod"]["1"].digest == (
        new.index.digest if existing == "overwrite" else old.index.digest)
    if existing != "overwrite":
        assert _writes(fake) == []
        assert [c for c in fake.calls if c[0] == "GET"] == []  # nothing fetched either
    assert r.children == (() if existing != "overwrite" else tuple(
        e["digest"] for e in json.loads(new.index.raw)["manifests"]))
    again = _copy_go(fake, "staging:1", "prod:1", existing=existing)
    if existing == "overwrite":
        assert (again.status, again.existing) == ("unchanged", {})


def test_copy_existing_skip_dry_run_says_keep() -> None:
    from tests.test_copy import _fake_release

    fake = Immutable()
    new = _fake_release(fake, "staging", "1", "dry new")
    old = _fake_release(fake, "prod", "1", "dry old")
    fake.calls.clear()
    r = _copy_go(fake, "staging:1", "prod:1", existing="skip", dry_run=True)
    assert (r.status, r.actions) == ("unchanged", [
        f"keep {HOST}/prod:1 at {old.index.digest} (--existing skip: {HOST}/staging:1 is "
        f"{new.index.digest})"])
    assert digest_lines([r]) == []  # the tag holds another index: nothing to sign


def test_copy_onto_an_immutable_tag_fails_in_the_registrys_words() -> None:
    from tests.test_copy import _fake_release

    fake = Immutable(immutable={"prod"})
    new = _fake_release(fake, "staging", "1", "imm new")
    old = _fake_release(fake, "prod", "1", "imm old")
    r = _copy_go(fake, "staging:1", "prod:1")
    assert (r.status, type(r.error), r.existing) == (
        "failed", ImmutableTagError, {"1": old.index.digest})
    assert r.error is not None
    assert r.error.one_line() == (
        f"push list {HOST}/prod:1: the tag holds {old.index.digest}, and the registry "
        f"refuses to move it to {new.index.digest}: registry answered 400 (TAG_INVALID: The "
        "image tag '1' already exists in the 'prod' repository and cannot be overwritten "
        f"because the tag is immutable.); {IMMUTABLE_HINT}")
    assert fake.manifests["prod"]["1"].digest == old.index.digest
    assert digest_lines([r]) == []


@pytest.mark.slow
def test_copy_existing_and_digests_end_to_end(registry: Any, ns: str, tmp_path: Path) -> None:
    """``manyfest copy --existing fail|skip|overwrite --digests FILE`` on the real registry,
    an ECR-like repository behind the quirk proxy: fail and skip write nothing (skip: an
    empty file); overwrite moves the tag and the immutable repository refuses in its words
    (exit 3); a copy found unchanged, and a copy by digest, are in the file."""
    from tests.helpers import head_digest, manyfest
    from tests.quirk_proxy import ImmutableTags, QuirkProxy
    from tests.test_copy import push_release

    host = registry.host
    new = push_release(f"{host}/{ns}/staging:1", f"{ns} new")
    old = push_release(f"{host}/{ns}/prod:1", f"{ns} old")
    push_release(f"{host}/{ns}/frozen:1", f"{ns} old")
    children = [e["digest"] for e in json.loads(new.index.raw)["manifests"]]
    proxy = QuirkProxy(host).start()
    try:
        frozen = ImmutableTags(proxy, repositories=(f"{ns}/frozen",))
        proxy.before.append(frozen)
        src, prod, froz = (f"{proxy.host}/{ns}/{r}:1" for r in ("staging", "prod", "frozen"))
        out = tmp_path / "digests.txt"

        def lines(repo: str) -> str:
            return "".join(f"{proxy.host}/{ns}/{repo}@{d}\n" for d in [*children,
                                                                       new.index.digest])

        dash = manyfest("copy", "--digests", "-", src, prod)
        assert (dash.returncode, dash.stdout) == (2, "")
        assert dash.stderr == ("copy --digests -: stdout carries copy's own lines; give "
                               "--digests a file path\n")

        failed = manyfest("copy", "--existing", "fail", "--digests", str(out), src, prod)
        assert (failed.returncode, failed.stdout) == (1, "")
        assert failed.stderr.splitlines() == [
            f"copy {src} to {prod} failed: {prod} holds {old.index.digest}, not {src}'s "
            f"{new.index.digest}: --existing fail leaves the copy undone (nothing was "
            f"written); {ExistingTagError.default_hint}"]
        assert out.read_text() == ""  # written also when every copy failed: none published

        kept = manyfest("copy", "--existing", "skip", "--digests", str(out), src, prod)
        assert (kept.returncode, kept.stderr) == (0, "")
        assert kept.stdout == (f"kept {prod}@{old.index.digest} (--existing skip), not "
                               f"{new.index.digest} from {src}\n")
        assert head_digest(f"{host}/{ns}/prod:1") == old.index.digest
        assert out.read_text() == ""

        moved = manyfest("copy", "--digests", str(out), src, prod, froz)
        assert moved.returncode == 3
        # the digest of what landed ends stdout; exit 3 says a copy failed
        assert moved.stdout == (f"updated {prod}@{new.index.digest} from {src}\n"
                                f"{new.index.digest}\n")
        assert moved.stderr.splitlines()[0] == (
            f"copy {src} to {froz} failed: push list {froz}: the tag holds "
            f"{old.index.digest}, and the registry refuses to move it to {new.index.digest}: "
            "registry answered 400 (TAG_INVALID: The image tag '1' already exists in the "
            f"'{ns}/frozen' repository and cannot be overwritten because the tag is "
            f"immutable.); {IMMUTABLE_HINT}")
        assert frozen.refused == [f"{ns}/frozen:1"]
        assert head_digest(f"{host}/{ns}/prod:1") == new.index.digest
        assert head_digest(f"{host}/{ns}/frozen:1") == old.index.digest
        assert out.read_text() == lines("prod")

        again = manyfest("copy", "--existing", "fail", "--digests", str(out), src, prod)
        assert again.returncode == 0, again.stderr
        assert again.stdout == (f"unchanged {prod}@{new.index.digest} from {src}\n"
                                f"{new.index.digest}\n")
        assert out.read_text() == lines("prod")  # unchanged: its children read back

        by_digest = f"{proxy.host}/{ns}/staging@{new.index.digest}"
        pinned = manyfest("copy", "--digests", str(out), by_digest, f"{proxy.host}/{ns}/pinned")
        assert pinned.returncode == 0, pinned.stderr
        assert pinned.stdout == (f"created {proxy.host}/{ns}/pinned@{new.index.digest} from "
                                 f"{by_digest}\n{new.index.digest}\n")
        assert out.read_text() == lines("pinned")  # a copy by digest has no tag: it counts
    finally:
        proxy.stop()
