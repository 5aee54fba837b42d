"""An OCI 1.1 referrers API in front of a registry that has none (Distribution 2.8).

:class:`ReferrersApi` adds two hooks to a :class:`~tests.quirk_proxy.QuirkProxy`:

* every manifest PUT the registry accepts whose body has a ``subject`` is recorded (per
  repository and subject digest) and answered with ``OCI-Subject: <subject digest>``, as a
  registry with the API answers (distribution-spec "Pushing Manifests with Subject");
* ``GET /v2/<name>/referrers/<digest>`` is answered as the spec's "Listing Referrers" says:
  200 with an image index (``application/vnd.oci.image.index.v1+json``) of descriptors
  (``mediaType``, ``digest``, ``size``, ``artifactType``: the manifest's, else its config's
  media type, and its ``annotations``), an empty index for a digest with none; the
  ``artifactType`` query filters (with ``OCI-Filters-Applied: artifactType``) unless
  :attr:`ReferrersApi.filters` is off; with :attr:`ReferrersApi.page_size`, pages linked by
  ``Link: <...>; rel="next"``.

What the registry already held before the proxy saw it is not listed (as on a registry
whose API was just enabled without a back-fill).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from aiohttp import web

from tests.quirk_proxy import QuirkProxy

_REFERRERS = re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})")
_MANIFEST = re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)")
INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class ReferrersApi:
    """The referrers API emulation on ``proxy`` (installed by :meth:`install`).

    Attributes:
        proxy: the quirk proxy it answers on.
        page_size: descriptors per page (0: one page).
        filters: apply the ``artifactType`` filter (else the client must filter).
        recorded: ``{(repository, subject digest): {digest: descriptor}}``.
    """

    proxy: QuirkProxy
    page_size: int = 0
    filters: bool = True
    recorded: dict[tuple[str, str], dict[str, dict[str, object]]] = field(default_factory=dict)

    def install(self) -> ReferrersApi:
        """Add the hooks to the proxy; returns self."""
        self.proxy.before.append(self._answer)
        self.proxy.after.append(self._record)
        return self

    def listed(self, repository: str, subject: str) -> list[str]:
        """Digests listed for ``subject`` in ``repository``, in push order."""
        return list(self.recorded.get((repository, subject), {}))

    async def _answer(self, request: web.Request) -> web.StreamResponse | None:
        match = _REFERRERS.fullmatch(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return None
        name, digest = match["name"], match["digest"]
        entries = list(self.recorded.get((name, digest), {}).values())
        headers = {"Content-Type": INDEX}
        wanted = request.query.get("artifactType", "")
        if wanted and self.filters:
            entries = [e for e in entries if e.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        if self.page_size:
            page = int(request.query.get("page", "0"))
            start = page * self.page_size
            if start + self.page_size < len(entries):
                query = f"page={page + 1}" + (f"&artifactType={wanted}" if wanted else "")
                headers["Link"] = f'</v2/{name}/referrers/{digest}?{query}>; rel="next"'
            entries = entries[start:start + self.page_size]
        body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries})
        return web.Response(status=200, body=body.encode(), headers=headers)

    async def _record(self, request: web.Request, response: web.Response) -> web.Response:
        match = _MANIFEST.fullmatch(request.path)
        if request.method != "PUT" or match is None or response.status != 201:
            return response
        raw = await request.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            return response
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if not isinstance(subject, dict) or "digest" not in subject:
            return response
        entry: dict[str, object] = {
            "mediaType": doc.get("mediaType", ""),
            "digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
            "size": len(raw),
        }
        kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType", "")
        if kind:
            entry["artifactType"] = kind
        if doc.get("annotations"):
            entry["annotations"] = doc["annotations"]
        listed = self.recorded.setdefault((match["name"], subject["digest"]), {})
        listed[str(entry["digest"])] = entry
        response.headers["OCI-Subject"] = subject["digest"]
        return response
