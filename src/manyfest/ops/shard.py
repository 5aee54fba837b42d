"""``publish --shard K/N``: a deterministic partition of a plan's lists by target repository.

The rule (docs/releases.md "Sharded runs"):

1. Lists are grouped by their target repository, ``registry/repository`` (the registry as
   :func:`manyfest.reference.registry_key` names it: ``host`` and ``host:80`` are one).
   Lists of one repository always fall in one shard: they share blobs and children, which
   are mounted and pushed once per repository. The targets of one plan list (``targets:``,
   ``--mirror``: lists with ``mirror_of``) fall in one shard too, so its sources are read
   once: repositories linked by a list and its first target are one group (linked through
   any chain of such links), named by its first repository in string order, and sized by
   all its lists. A plan without fan-out has one group per repository.
2. Groups are taken by number of lists, most first, then by name (plain string
   order); each goes to the shard with the fewest lists so far, the lowest shard number on
   a tie.
3. A shard's lists keep the plan's order.

Nothing depends on Python's hash seed, the order of the documents of a repository, or the
machine: the same plan and N give every job the same partition, so N jobs running shards
1..N publish every list of the plan exactly once. A shard may be empty (N larger than the
number of repositories).

Cost: O(R log R) for R repositories, whatever N is. Only the first ``min(N, R)`` shards can
hold a repository (while a shard is empty, the next repository goes to the lowest-numbered
empty one), so only those are ever counted; shards ``min(N, R) + 1`` to N are empty without
being made. N is at most :data:`MAX_SHARDS`.

Pure functions over :class:`~manyfest.ops.plan.PlanList` sequences; no I/O.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from manyfest.errors import UsageError
from manyfest.reference import registry_key

if TYPE_CHECKING:
    from manyfest.ops.plan import PlanList

EXPECTED = "K/N, whole numbers with 1 <= K <= N (e.g. 2/4)"
"""What ``--shard`` takes, in words (usage errors say it)."""

MAX_SHARDS = 1_000_000
"""The largest N of ``--shard K/N``: far more jobs than any CI system or Kubernetes Job runs
at once (a larger N would only add empty shards); larger is a usage error."""

_SHARD = re.compile(r"([0-9]+)/([0-9]+)\Z")
_SHOWN = 40
"""Longest ``--shard`` value echoed whole in an error (longer: its start and its length)."""


def _shown(text: str) -> str:
    """``text`` as an error message quotes it: ``repr``, cut short past :data:`_SHOWN`
    characters (``'99999999999999999999...' (5002 characters)``), so a line stays a line."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN - 20]!r}... ({len(text)} characters)"


def _number(digits: str) -> int | None:
    """The whole number ``digits`` spells (ASCII digits, leading zeros allowed), or None when
    it is larger than :data:`MAX_SHARDS` (decided from its length first: never converts more
    digits than Python's int/string limit allows)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(MAX_SHARDS)):
        return None
    value = int(digits)
    return value if value <= MAX_SHARDS else None


def parse(text: str) -> tuple[int, int]:
    """``K/N`` as ``(K, N)``: shard K of N, 1 <= K <= N <= :data:`MAX_SHARDS` (``"2/4"`` is
    ``(2, 4)``; leading zeros allowed: ``"03/12"`` is ``(3, 12)``).

    Raises:
        UsageError: (exit 2) not two whole numbers joined by ``/``, N is 0, K is 0 or larger
            than N, or N is larger than :data:`MAX_SHARDS` (however many digits it has); the
            message names ``--shard``, quotes the value (cut short when long) and says what
            it expects.
    """
    hint = "give this job's shard number and the number of shards"
    match = _SHARD.match(text)
    if match is not None:
        k, n = _number(match.group(1)), _number(match.group(2))
        if n is None:
            raise UsageError(f"--shard {_shown(text)}: N is at most {MAX_SHARDS} "
                             "(more shards than repositories are empty anyway)", hint=hint)
        if k is not None and 1 <= k <= n:
            return k, n
    raise UsageError(f"--shard {_shown(text)}: expected {EXPECTED}", hint=hint)


def repository(item: PlanList) -> str:
    """The repository a list is sharded by: ``registry/repository`` of its target (the
    registry spelt as :func:`~manyfest.reference.registry_key` gives it)."""
    target = item.target
    return f"{registry_key(target.registry)}/{target.repository}"


def _root(parent: dict[str, str], name: str) -> str:
    """The group of ``name`` in the union-find forest ``parent`` (paths halved on the way)."""
    while parent[name] != name:
        parent[name] = parent[parent[name]]
        name = parent[name]
    return name


def groups(plan: Sequence[PlanList]) -> dict[str, str]:
    """Each target repository of ``plan`` (:func:`repository`) and its group's name: a
    repository is grouped with the repository of the first target of every fan-out list
    (``mirror_of``) it holds, transitively; a group is named by its least repository (plain
    string order). Without fan-out, every repository is its own group."""
    parent: dict[str, str] = {}
    for item in plan:
        name = repository(item)
        parent.setdefault(name, name)
        first = item.mirror_of
        if first is None:
            continue
        lead = f"{registry_key(first.registry)}/{first.repository}"
        parent.setdefault(lead, lead)
        a, b = _root(parent, name), _root(parent, lead)
        if a != b:
            parent[max(a, b)] = min(a, b)  # the least name is the root: the group's name
    return {name: _root(parent, name) for name in parent}


def assign(plan: Sequence[PlanList], count: int) -> dict[str, int]:
    """Each target repository of ``plan`` and its shard number (1 to ``count``).

    Groups of repositories (:func:`groups`; one per repository without fan-out) sorted by
    (-number of lists, name), each given to the shard with the fewest lists so far (lowest
    number on a tie): see the module's rule. O(R log R) for R repositories whatever
    ``count`` is: only shards 1 to ``min(count, R)`` are counted (the others stay empty, so
    no repository is ever given to them).

    Raises:
        ValueError: ``count`` is less than 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    group = groups(plan)
    sizes: dict[str, int] = {}
    for item in plan:
        name = group[repository(item)]
        sizes[name] = sizes.get(name, 0) + 1
    # (lists so far, shard): a heap. While some shard is empty, the lowest-numbered empty
    # one has the fewest lists, so the first min(count, R) repositories fill shards 1, 2,
    # ... in turn and no higher shard is ever chosen: those need no entry.
    loads = [(0, number) for number in range(1, min(count, len(sizes)) + 1)]
    shard_of: dict[str, int] = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        load, number = heapq.heappop(loads)
        shard_of[name] = number
        heapq.heappush(loads, (load + sizes[name], number))
    return {name: shard_of[root] for name, root in group.items() if root in shard_of}


def select(plan: Sequence[PlanList], k: int, n: int) -> list[PlanList]:
    """The lists of shard ``k`` of ``n``, in plan order (possibly none).

    The ``n`` shards are disjoint and together hold every list of ``plan`` once.

    Raises:
        ValueError: not ``1 <= k <= n``.
    """
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: expected 1 <= K <= N")
    shards = assign(plan, n)
    return [item for item in plan if shards[repository(item)] == k]


def counts(plan: Sequence[PlanList], selected: Sequence[PlanList], k: int,
           n: int) -> dict[str, int]:
    """What shard ``k`` of ``n`` holds, as the ``fields`` of its JSON log event: ``shard``
    (k), ``shards`` (n), ``lists`` and ``repositories`` (the shard's), ``plan_lists`` and
    ``plan_repositories`` (the whole plan's)."""
    return {"shard": k, "shards": n, "lists": len(selected),
            "repositories": len({repository(item) for item in selected}),
            "plan_lists": len(plan), "plan_repositories": len({repository(i) for i in plan})}


def describe(plan: Sequence[PlanList], selected: Sequence[PlanList], k: int, n: int) -> str:
    """One line about shard ``k`` of ``n``: how many of the plan's lists and repositories
    it holds (``shard 2/4: 12 of 50 lists, 3 of 10 repositories``)."""
    from manyfest.words import plural

    c = counts(plan, selected, k, n)
    return (f"shard {k}/{n}: {c['lists']} of {plural(c['plan_lists'], 'list')}, "
            f"{c['repositories']} of "
            f"{plural(c['plan_repositories'], 'repository', 'repositories')}")
