"""Writing publish plans (manifest-tool YAML) for the demo and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from manyfest.platform import Platform


def plan_document(
    target: str, sources: Iterable[tuple[str, Platform]], tags: Sequence[str] = ()
) -> str:
    """One manifest-tool document: ``target``, extra ``tags``, each source with its platform."""
    lines = [f"image: {target}"]
    if tags:
        lines.append("tags: [" + ", ".join(f'"{t}"' for t in tags) + "]")
    lines.append("manifests:")
    for source, platform in sources:
        lines += [
            f"  - image: {source}",
            "    platform:",
            f"      os: {platform.os}",
            f"      architecture: {platform.architecture}",
        ]
        if platform.variant:
            lines.append(f"      variant: {platform.variant}")
    return "\n".join(lines)


def write_plan(path: Path, documents: Iterable[str]) -> None:
    """Write documents as one multi-document YAML file."""
    path.write_text("\n---\n".join(documents) + "\n")
