"""HTTP(S)_PROXY / NO_PROXY, as Go's ``http.ProxyFromEnvironment`` reads them (docker does)."""

from __future__ import annotations

import ipaddress
import urllib.parse
import urllib.request


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from HTTP(S)_PROXY/NO_PROXY, or ``None`` (direct).

    Loopback hosts never go through a proxy (Go's ``httpproxy`` rule, which docker follows).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy:
        return None
    if urllib.request.proxy_bypass_environment(parts.netloc, proxies):  # type: ignore[attr-defined]
        return None
    return proxy
