"""Wording helpers for messages: counts with the right plural.

Light on purpose (no imports): the CLI's start-up path and every layer may use it.
"""

from __future__ import annotations

_IRREGULAR = {"child": "children", "entry": "entries", "retry": "retries", "was": "were"}


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``plural(1, "list")`` is ``1 list``,
    ``plural(2, "list")`` is ``2 lists``, ``plural(0, "entry")`` is ``0 entries``.

    ``many`` is the plural when it is not ``noun + "s"`` nor a known irregular one
    (child, entry, retry); a noun of several words is pluralised on its last word
    (``plural(2, "tag PUT")`` is ``2 tag PUTs``).
    """
    if n == 1:
        return f"{n} {noun}"
    if many is None:
        head, _, last = noun.rpartition(" ")
        many = _IRREGULAR.get(last, last + "s")
        many = f"{head} {many}" if head else many
    return f"{n} {many}"

