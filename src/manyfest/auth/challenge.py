"""``WWW-Authenticate`` parsing (RFC 7235 ``auth-scheme 1*SP #auth-param``).

Registries answer ``/v2/`` with ``Basic realm="..."`` or
``Bearer realm="...",service="...",scope="..."`` (distribution token auth spec).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed challenge: ``scheme`` lower-cased (``basic``/``bearer``) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        """The ``realm`` parameter ('' when absent)."""
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        """The ``service`` parameter ('' when absent)."""
        return self.params.get("service", "")


def parse(header: str) -> Challenge | None:
    """Parse the first challenge of a ``WWW-Authenticate`` value; ``None`` if unparseable."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        # Consecutive auth-params only: stop where the next challenge ("Basic realm=") starts.
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (bare or "")
        params[match.group(1).lower()] = value
    return Challenge(scheme.lower(), params)
