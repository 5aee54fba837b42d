"""manyfest: publish multi-architecture manifest lists / OCI image indexes, fast.

A drop-in for ``docker manifest`` (same commands, local store and list bytes) and a bulk
publisher (``manyfest publish PLAN.yaml``) built on one asyncio engine.
"""

from __future__ import annotations

__version__ = "0.1.0"
