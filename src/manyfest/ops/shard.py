"""``publish --shard K/N``: a deterministic partition of a plan's lists by target repository.

The rule (docs/releases.md "Sharded runs"):

1. Lists are grouped by their target repository, ``registry/repository`` (the registry as
   :func:`manyfest.reference.registry_key` names it: ``host`` and ``host:80`` are one).
   Lists of one repository always fall in one shard: they share blobs and children, which
   are mounted and pushed once per repository.
2. Repositories are taken by number of lists, most first, then by name (plain string
   order); each goes to the shard with the fewest lists so far, the lowest shard number on
   a tie.
3. A shard's lists keep the plan's order.

Nothing depends on Python's hash seed, the order of the documents of a repository, or the
machine: the same plan and N give every job the same partition, so N jobs running shards
1..N publish every list of the plan exactly once. A shard may be empty (N larger than the
number of repositories).

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

_SHARD = re.compile(r"([0-9]+)/([0-9]+)\Z")


def parse(text: str) -> tuple[int, int]:
    """``K/N`` as ``(K, N)``: shard K of N, 1 <= K <= N (``"2/4"`` is ``(2, 4)``).

    Raises:
        UsageError: (exit 2) not two whole numbers joined by ``/``, N is 0, or K is 0 or
            larger than N; the message names ``--shard`` and what it expects.
    """
    match = _SHARD.match(text)
    if match is not None:
        k, n = int(match.group(1)), int(match.group(2))
        if 1 <= k <= n:
            return k, n
    raise UsageError(f"--shard {text!r}: expected {EXPECTED}",
                     hint="give this job's shard number and the number of shards")


def repository(item: PlanList) -> str:
    """The repository a list is sharded by: ``registry/repository`` of its target (the
    registry spelt as :func:`~manyfest.reference.registry_key` gives it)."""
    target = item.target
    return f"{registry_key(target.registry)}/{target.repository}"


def assign(plan: Sequence[PlanList], count: int) -> dict[str, int]:
    """Each target repository of ``plan`` and its shard number (1 to ``count``).

    Repositories sorted by (-number of lists, name), each given to the shard with the
    fewest lists so far (lowest number on a tie): see the module's rule.

    Raises:
        ValueError: ``count`` is less than 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    sizes: dict[str, int] = {}
    for item in plan:
        name = repository(item)
        sizes[name] = sizes.get(name, 0) + 1
    loads = [(0, number) for number in range(1, count + 1)]  # (lists so far, shard): a heap
    out: dict[str, int] = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        load, number = heapq.heappop(loads)
        out[name] = number
        heapq.heappush(loads, (load + sizes[name], number))
    return out


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


def describe(plan: Sequence[PlanList], selected: Sequence[PlanList], k: int, n: int) -> str:
    """One line about shard ``k`` of ``n``: how many of the plan's lists and repositories
    it holds (``shard 2/4: 12 of 50 lists, 3 of 10 repositories``)."""
    from manyfest.words import plural

    every = {repository(item) for item in plan}
    mine = {repository(item) for item in selected}
    return (f"shard {k}/{n}: {len(selected)} of {plural(len(plan), 'list')}, "
            f"{len(mine)} of {plural(len(every), 'repository', 'repositories')}")
