"""Registry API client."""

from manyfest.registry.client import ManifestHead, RegistryClient

__all__ = ["ManifestHead", "RegistryClient"]
