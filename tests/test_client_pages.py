"""Paginated listings (:mod:`manyfest.registry.client`): ``Link`` headers read as RFC 8288
says (:func:`parse_links`, :func:`next_link`) and a registry that pages in a loop stopped
with one line (:class:`PageTrail`, through :meth:`RegistryClient.list_tags` and the
referrers listing), at unit level with aioresponses. The end-to-end test of a looping tag
list through the quirk proxy is in tests/test_copy.py."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from aioresponses import aioresponses

from manyfest import reference
from manyfest.errors import RegistryError
from manyfest.registry import RegistryClient
from manyfest.registry.client import next_link, page_key, parse_links
from manyfest.transport import Settings, Transport

HOST = "127.0.0.1:1"
BASE = f"https://{HOST}"  # tried first, as for any registry
TAGS = f"{BASE}/v2/app/tags/list"


@pytest.mark.parametrize(("header", "url"), [
    ('</v2/a/tags/list?n=2&last=b>; rel="next"', "/v2/a/tags/list?n=2&last=b"),
    ("<https://r.example/v2/a/tags/list?last=b>; rel=next", "https://r.example/v2/a/tags/list?last=b"),
    ('<list?last=b>;rel="next"', "list?last=b"),  # relative, no space
    ('< /v2/x >  ;  rel  =  "next"  ', "/v2/x"),  # whitespace around everything
    ('<https://r/x?p=1>; rel="prev", <https://r/x?p=3>; rel=next', "https://r/x?p=3"),
    ('<https://r/x?a,b>; title="x"; rel="last next"', "https://r/x?a,b"),
    ('<https://r/x>; rel="NEXT"', "https://r/x"),  # relation types: no case
    ('<https://r/a>; title="a, <b>; rel=next"; rel="prev", <https://r/c>; rel="next"',
     "https://r/c"),  # a quoted comma, semicolon and <...> are in the title
    ('<https://r/a>; title="say \\"next\\""; rel=prev, </v2/n>; rel=next', "/v2/n"),
    ('<https://r/a>; rel="prev"; rel="next"', ""),  # rel twice: the first counts
    ('<https://r/a>; rel="nextpage"', ""),  # not the relation type next
    ('<https://r/x>; rel="prev"', ""),
    ('garbage, </v2/after>; rel=next', "/v2/after"),  # what is not a link is skipped
    ("", ""),
])
def test_next_link(header: str, url: str) -> None:
    assert next_link(header) == url


def test_parse_links_keeps_every_link_and_parameter() -> None:
    assert parse_links('</a>; rel="next"; type=text/html; hreflang, <b>;REL=prev') == [
        ("/a", {"rel": "next", "type": "text/html", "hreflang": ""}), ("b", {"rel": "prev"})]


def test_page_key_ignores_the_order_of_the_query() -> None:
    assert page_key(f"{TAGS}?n=2&last=b") == page_key(f"{TAGS}?last=b&n=2") == (
        HOST, "/v2/app/tags/list", (("last", "b"), ("n", "2")))
    assert page_key(f"{TAGS}?n=2&last=b") != page_key(f"{TAGS}?n=2&last=c")


def _list_tags(mocked: aioresponses, page_size: int | None = 2) -> list[str]:
    mocked.get(f"{BASE}/v2/", status=200)

    async def run() -> list[str]:
        async with Transport(Settings()) as transport:
            return await RegistryClient(transport).list_tags(
                reference.parse(f"{HOST}/app"), page_size=page_size)

    return anyio.run(run)


def _page(mocked: aioresponses, query: str, tags: list[str], link: str = "") -> None:
    mocked.get(f"{TAGS}?{query}", payload={"name": "app", "tags": tags},
               headers={"Link": link} if link else {})


def _requested(mocked: aioresponses) -> list[Any]:
    """The tag pages asked for (aioresponses keeps their queries sorted: compared as
    :func:`page_key`)."""
    return [page_key(str(url)) for (method, url) in mocked.requests if "/tags/list" in str(url)]


def test_pages_are_followed_in_every_link_form() -> None:
    with aioresponses() as mocked:
        _page(mocked, "n=2", ["a", "b"], '</v2/app/tags/list?n=2&last=b>; rel="next"')
        _page(mocked, "n=2&last=b", ["c", "d"], f'<{TAGS}?n=2&last=d>; rel="next"')
        _page(mocked, "n=2&last=d", ["d", "e"], '<list?n=2&last=e>; rel=next')
        _page(mocked, "n=2&last=e", ["f"])
        assert _list_tags(mocked) == ["a", "b", "c", "d", "e", "f"]  # d once
        assert _requested(mocked) == [page_key(f"{TAGS}?{q}") for q in (
            "n=2", "n=2&last=b", "n=2&last=d", "n=2&last=e")]


@pytest.mark.parametrize(("pages", "why"), [
    # the second page names the first again (the query in another order)
    ([("n=2", ["a", "b"], "</v2/app/tags/list?n=2&last=b>; rel=next"),
      ("n=2&last=b", ["c", "d"], f"<{TAGS}?n=2>; rel=next")],
     f"(<{TAGS}?n=2>; rel=next) names a page already read"),
    ([("n=2", ["a", "b"], "</v2/app/tags/list?last=b&n=2>; rel=next"),
      ("last=b&n=2", ["c", "d"], "</v2/app/tags/list?n=2&last=b>; rel=next")],
     "(</v2/app/tags/list?n=2&last=b>; rel=next) names a page already read"),
    # the same last again, in a URL never read
    ([("n=2", ["a", "b"], "</v2/app/tags/list?n=2&last=b>; rel=next"),
      ("n=2&last=b", ["c", "d"], "</v2/app/tags/list?n=3&last=b>; rel=next")],
     "(</v2/app/tags/list?n=3&last=b>; rel=next) asks again for the tags after last=b"),
    # a page of tags already listed that names yet another page
    ([("n=2", ["a", "b"], "</v2/app/tags/list?n=2&page=2>; rel=next"),
      ("n=2&page=2", ["a", "b"], "</v2/app/tags/list?n=2&page=3>; rel=next")],
     "(</v2/app/tags/list?n=2&page=3>; rel=next) follows a page that listed nothing new"),
])
def test_a_registry_paging_in_a_loop_fails_in_one_line(
        pages: list[tuple[str, list[str], str]], why: str) -> None:
    with aioresponses() as mocked:
        for query, tags, link in pages:
            _page(mocked, query, tags, link)
        with pytest.raises(RegistryError) as caught:
            _list_tags(mocked)
        assert len(_requested(mocked)) == len(pages)  # no page asked for twice
    last_url = f"{TAGS}?{pages[-1][0]}"
    assert page_key(caught.value.url) == page_key(last_url)
    assert caught.value.one_line() == (
        f"list tags of {HOST}/app: the registry pages in a loop: its Link header {why}: "
        "registry answered 200; the registry or a proxy in front of it is broken: report it "
        "to its operator")


def test_referrers_paging_in_a_loop_fails_in_one_line() -> None:
    digest = "sha256:" + "a" * 64
    url = f"{BASE}/v2/app/referrers/{digest}"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType":
                             "application/vnd.oci.image.index.v1+json", "manifests": []}
    with aioresponses() as mocked:
        mocked.get(f"{BASE}/v2/", status=200)
        mocked.get(url, payload=index, headers={"Link": f'<{url}?p=2>; rel="next"'})
        mocked.get(f"{url}?p=2", payload=index, headers={"Link": f'<{url}>; rel="next"'})

        async def run() -> Any:
            async with Transport(Settings()) as transport:
                return await RegistryClient(transport).get_referrers(
                    reference.parse(f"{HOST}/app"), digest)

        with pytest.raises(RegistryError) as caught:
            anyio.run(run)
    assert re.fullmatch(
        rf"list referrers of {re.escape(HOST)}/app@{digest}: the registry pages in a loop: its "
        rf"Link header \(<{re.escape(url)}>; rel=\"next\"\) names a page already read: "
        r"registry answered 200; .*", caught.value.one_line())
