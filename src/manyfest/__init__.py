"""manyfest: publish multi-architecture manifest lists / OCI image indexes, fast.

A drop-in for ``docker manifest`` (same commands, local store and list bytes) and a bulk
publisher (``manyfest publish PLAN.yaml``) built on one asyncio engine, which this package
exposes::

    import anyio, manyfest

    async def main() -> None:
        async with manyfest.Session() as session:
            report = await session.publish(manyfest.load_plan("plan.yaml"))
            print(report.summary())

    anyio.run(main)

Public names: :class:`Session` (one run: transport, engine, store), :class:`Settings`,
:class:`PublishOptions`, :class:`PublishReport`, :class:`ListResult`, :class:`Event`,
:func:`load_plan`, :func:`parse_plan`, :func:`parse_reference`, :class:`Reference`,
:class:`Platform`, :class:`Manifest`, and the errors (:class:`ManyfestError` and subclasses).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyfest._version import __version__

if TYPE_CHECKING:
    from manyfest.api import Session
    from manyfest.content import Manifest
    from manyfest.engine import ListResult, PublishOptions
    from manyfest.errors import (
        AuthenticationError,
        AuthorizationError,
        CertificateError,
        InvalidReferenceError,
        ManyfestError,
        NotFoundError,
        PlanError,
        PublishFailed,
        RateLimitedError,
        RegistryError,
        TransportError,
        UsageError,
    )
    from manyfest.events import Event
    from manyfest.ops.plan import PlanList
    from manyfest.ops.publish import PublishReport
    from manyfest.platform import Platform
    from manyfest.reference import Reference
    from manyfest.reference import parse as parse_reference
    from manyfest.transport import Settings

# Public name -> (module, attribute). Imported on first use (PEP 562), so ``import manyfest``
# stays light: the CLI installs its signal handlers before aiohttp, rich and typer load.
_LAZY: dict[str, tuple[str, str]] = {
    "Session": ("manyfest.api", "Session"),
    "Manifest": ("manyfest.content", "Manifest"),
    "Event": ("manyfest.events", "Event"),
    "ListResult": ("manyfest.engine", "ListResult"),
    "PublishOptions": ("manyfest.engine", "PublishOptions"),
    "PlanList": ("manyfest.ops.plan", "PlanList"),
    "PublishReport": ("manyfest.ops.publish", "PublishReport"),
    "Platform": ("manyfest.platform", "Platform"),
    "Reference": ("manyfest.reference", "Reference"),
    "parse_reference": ("manyfest.reference", "parse"),
    "Settings": ("manyfest.transport", "Settings"),
    **{
        name: ("manyfest.errors", name)
        for name in (
            "AuthenticationError",
            "AuthorizationError",
            "CertificateError",
            "InvalidReferenceError",
            "ManyfestError",
            "NotFoundError",
            "PlanError",
            "PublishFailed",
            "RateLimitedError",
            "RegistryError",
            "TransportError",
            "UsageError",
        )
    },
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562).

    Raises:
        AttributeError: ``name`` is not a public name of manyfest.
    """
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'manyfest' has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "CertificateError",
    "Event",
    "InvalidReferenceError",
    "ListResult",
    "Manifest",
    "ManyfestError",
    "NotFoundError",
    "PlanError",
    "PlanList",
    "Platform",
    "PublishFailed",
    "PublishOptions",
    "PublishReport",
    "RateLimitedError",
    "Reference",
    "RegistryError",
    "Session",
    "Settings",
    "TransportError",
    "UsageError",
    "__version__",
    "load_plan",
    "parse_plan",
    "parse_reference",
]


def load_plan(path: str | Path) -> list[PlanList]:
    """Read a plan file (manifest-tool YAML documents); see :mod:`manyfest.ops.plan`.

    Raises:
        PlanError: the file cannot be read or is not a valid plan.
    """
    from manyfest.ops.plan import load

    return load(Path(path))


def parse_plan(text: str) -> list[PlanList]:
    """Parse plan YAML text; see :func:`manyfest.ops.plan.parse_documents`.

    Raises:
        PlanError: the text is not a valid plan (names the document and field).
    """
    from manyfest.ops.plan import parse_documents

    return parse_documents(text, "plan")
