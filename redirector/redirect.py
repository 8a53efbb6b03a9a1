"""The hot path: `GET|HEAD /{code}` → resolve the link, build the click, have it recorded, answer 302.

Nothing else happens here: no parsing of the user agent or referer, no geo lookup, no ClickHouse, no log
line per request. A bare ASGI callable, so no framework routing runs per redirect."""

from __future__ import annotations

import time
from urllib.parse import quote

from redis.exceptions import RedisError

from core import clock
from core.clickid import ClickIds
from core.links import OPEN_IN_BROWSER, Link, Target
from core.validate import CODE_CHARS, CODE_MAX_CHARS, CODE_MIN_CHARS, country_or_empty
from redirector.click import Click
from redirector.clientip import ClientAddress
from redirector.escape import escape_response
from redirector.inapp import inapp_of
from redirector.querykeys import drop_param
from redirector.recorder import Recorder
from redirector.resolver import LinkResolver, LookupFailed
from redirector.smartlinks import time_expired
from redirector.smartroute import SmartRouter
from redirector.stats import RedirectStats

# Printable ASCII except space, '#', and the characters a header may not carry: a query string made only of
# these is passed through as it is; anything else is percent-encoded first.
_PLAIN_QUERY_BYTES = frozenset(range(0x21, 0x7F)) - {ord("#"), ord('"'), ord("<"), ord(">"), ord("\\")}
_QUERY_SAFE = "&=+%/:;,@!$'()*?~[]|{}^`"
# A viewer's query string longer than this is not passed through: most servers refuse a request line over
# 8 KiB, so it could not reach the merchant anyway, and reading every key of it as a server would (see
# querykeys.py) must stay a bounded cost on the loop that answers redirects (about 3 ms at worst here).
MAX_PASS_THROUGH_QUERY_BYTES = 4096
QUERY_TOO_LONG = "query_too_long"

_NO_STORE = (b"cache-control", b"private, no-store")


def _error_body(code: str, message: str) -> bytes:
    return b'{"error":{"code":"%s","message":"%s"}}' % (code.encode(), message.encode())


_NOT_FOUND = _error_body("not_found", "no link with this code")
_GONE = _error_body("link_disabled", "this link has been disabled")
_EXPIRED = _error_body("expired", "this link has expired")
# Fallback reasons of smart links: answered, not recorded (see redirect_expired / the 503 below).
LINK_EXPIRED = "link_expired"
CLICK_LIMIT_UNAVAILABLE = "click_limit_unavailable"
_UNAVAILABLE = _error_body("unavailable", "links cannot be looked up right now; retry shortly")
_NOT_ALLOWED = _error_body("method_not_allowed", "a link answers GET and HEAD only")
# Methods counted under their own name on a code path; any other is counted as OTHER, so a client
# inventing methods cannot grow the metric labels.
_COUNTED_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})


def pass_through_query(query: bytes, click_param: str) -> str:
    """The short link's own query string, safe for a Location header, without any pair a server could
    read as our click parameter in any spelling (querykeys.py): a viewer must not be able to plant a click
    id of their choosing. The other pairs keep their bytes."""
    if not query:
        return ""
    if not _PLAIN_QUERY_BYTES.issuperset(query):
        query = quote(query, safe=_QUERY_SAFE).encode()
    return drop_param(query.decode("ascii"), click_param)


def build_location(url: str, query: str, click_param: str, click_id: str) -> str:
    fragment = ""
    hash_at = url.find("#")
    if hash_at >= 0:
        url, fragment = url[:hash_at], url[hash_at:]
    sep = "&" if "?" in url else "?"
    if query:
        return f"{url}{sep}{query}&{click_param}={click_id}{fragment}"
    return f"{url}{sep}{click_param}={click_id}{fragment}"


def new_click(
    click_id: str,
    now_ms: int,
    code: str,
    link: Link,
    target: Link | Target,
    method: str,
    viewer: tuple[str, str, str, int, str, str],
    variant: int = -1,
    inapp: str = "",
) -> Click:
    """The click of one redirect: `viewer` as RedirectHandler._viewer gives it, `target` the link itself or
    the destination a smart link chose."""
    user_agent, referer, _, ip_hash, ip_prefix, country = viewer
    return Click(
        click_id,
        now_ms,
        code,
        link.creator_id,
        target.merchant_id or "",
        target.host,
        method == "HEAD",
        user_agent,
        referer,
        ip_hash,
        ip_prefix,
        country,
        variant,
        inapp,
    )


class RedirectHandler:
    def __init__(
        self,
        resolver: LinkResolver,
        recorder: Recorder,
        ids: ClickIds,
        client_address: ClientAddress,
        stats: RedirectStats,
        country_header: str | None,
        router: SmartRouter,
    ) -> None:
        self._resolver = resolver
        self._recorder = recorder
        self._ids = ids
        self._client_address = client_address
        self._stats = stats
        self._country_header = country_header.lower().encode() if country_header else None
        self._router = router

    async def __call__(self, scope: dict, receive, send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        code = scope["path"][1:]
        if not (CODE_MIN_CHARS <= len(code) <= CODE_MAX_CHARS and CODE_CHARS.issuperset(code)):
            return await self._finish(send, method, 404, _NOT_FOUND, started)
        try:
            link = await self._resolver.resolve(code)
        except LookupFailed:
            self._stats.lookup_errors += 1
            return await self._finish(send, method, 503, _UNAVAILABLE, started, retry_after=True)
        if link is None:
            return await self._finish(send, method, 404, _NOT_FOUND, started)
        if link.disabled:
            return await self._finish(send, method, 410, _GONE, started)

        viewer = self._viewer(scope["headers"], scope.get("client"))
        user_agent, _, ip, ip_hash, _, country = viewer  # what smart routing reads
        # Only links that ask for it look at the user agent here (plain redirects pay one comparison).
        inapp = (link.open_in == OPEN_IN_BROWSER and method == "GET" and inapp_of(user_agent)) or ""
        now_ms = clock.now_ms()
        # A plain link is its own destination; a smart one picks it (smartroute.py) or has answered.
        target, variant = (
            (link, -1)
            if link.smart is None
            else await self._route(send, method, link, now_ms, user_agent, ip, ip_hash, country, started)
        )
        if target is None:
            return
        click_id = self._ids.new(now_ms)
        await self._recorder.record(
            new_click(click_id, now_ms, code, link, target, method, viewer, variant, inapp)
        )
        location = self._location(target, scope["query_string"], click_id)
        # An in-app browser on an open_in=browser link gets the escape page (escape.py) instead of the 302;
        # its click is recorded above all the same.
        status, headers, body = (
            escape_response(location, user_agent)
            if inapp
            else (302, [(b"location", location.encode()), _NO_STORE, (b"content-length", b"0")], b"")
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        stats = self._stats
        stats.responses[(method, status)] += 1
        stats.latency.observe(time.perf_counter() - started)

    def answer_now(self, method: str, code: str, query: bytes, headers: list, client, reply) -> bool:
        """The common case without an ASGI request: a plain link already in this worker's cache, a 302.
        The click is queued for the next group commit and `reply(location)` runs once it is durable, called
        by the commit (so no task and no coroutine per request). False, with nothing done, for
        anything else (a miss, a smart link, an in-app escape page, a 404/410): the caller then takes the
        ASGI path, `__call__`, which answers every case the same way it always has."""
        if not (CODE_MIN_CHARS <= len(code) <= CODE_MAX_CHARS and CODE_CHARS.issuperset(code)):
            return False
        link = self._resolver.cached(code)
        if link is None or link.disabled or link.smart is not None:
            return False
        started = time.perf_counter()
        viewer = self._viewer(headers, client)
        user_agent = viewer[0]
        if link.open_in == OPEN_IN_BROWSER and method == "GET" and inapp_of(user_agent):
            return False
        recorder = self._recorder
        if recorder.closing:
            return False
        self._resolver.served_from_cache()
        now_ms = clock.now_ms()
        click_id = self._ids.new(now_ms)
        location = self._location(link, query, click_id).encode()
        click = new_click(click_id, now_ms, code, link, link, method, viewer)
        stats = self._stats

        def durable() -> None:
            reply(location)
            stats.shortcut += 1
            stats.responses[(method, 302)] += 1
            stats.latency.observe(time.perf_counter() - started)

        recorder.submit(click, durable)
        return True

    def _viewer(self, headers: list, client) -> tuple[str, str, str, int, str, str]:
        """What a click keeps of its viewer: user agent, referer, client IP, its keyed hash and prefix, and
        the country a trusted proxy named."""
        user_agent = referer = country = ""
        forwarded = None  # every X-Forwarded-For line, in order: one list (a proxy may add a line)
        country_header = self._country_header
        for name, value in headers:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")
            elif name == b"referer":
                referer = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                if forwarded is None:
                    forwarded = [value]
                else:
                    forwarded.append(value)
            elif name == country_header:
                country = value.decode("latin-1")
        forwarded_for = b",".join(forwarded).decode("latin-1") if forwarded else ""
        address = self._client_address
        peer = client[0] if client else ""
        ip = address.client_ip(peer, forwarded_for) if address.has_proxies else peer
        if country:  # only a trusted proxy may tell us the country, and only as two ASCII letters
            trusted = not address.has_proxies or address.is_trusted(peer)
            country = country_or_empty(country[:2]) if trusted else ""
        ip_hash, ip_prefix = address.reduce(ip)
        return user_agent, referer, ip, ip_hash, ip_prefix, country

    def _location(self, target: Link | Target, query: bytes, click_id: str) -> str:
        if len(query) > MAX_PASS_THROUGH_QUERY_BYTES:
            query = b""
            self._stats.fallbacks[QUERY_TOO_LONG] += 1
        param = target.click_param
        return build_location(target.url, pass_through_query(query, param), param, click_id)

    async def _route(
        self, send, method, link, now_ms, user_agent, ip, ip_hash, country, started
    ) -> tuple[Link | Target | None, int]:
        """A smart link's destination and variant (smartroute.py), or (None, -1) once the expired or 503
        answer is sent. Awaits only for I/O: the first load of the country database, the click counter."""
        smart = link.smart
        router = self._router
        if time_expired(smart, now_ms):
            await self._expired(send, method, smart.expired, started)
            return None, -1
        if smart.country_rules and not (country or router.countries.loaded):
            await router.countries.ready()
        target, variant = router.choose(link, smart, user_agent, ip, ip_hash, country)
        if smart.max_clicks:
            try:
                allowed = await router.count(link.code, smart.max_clicks, method == "HEAD")
            except (RedisError, OSError):
                self._stats.fallbacks[CLICK_LIMIT_UNAVAILABLE] += 1
                await self._finish(send, method, 503, _UNAVAILABLE, started, retry_after=True)
                return None, -1
            if not allowed:
                await self._expired(send, method, smart.expired, started)
                return None, -1
        return target, variant

    async def _expired(self, send, method: str, expired_url: Target | None, started: float) -> None:
        """Past `expires_at` or `max_clicks`: 410 `expired`, or a plain 302 to `expired_url` (no click id,
        no query passed on, nothing recorded: it is not a billable click)."""
        self._stats.fallbacks[LINK_EXPIRED] += 1
        if expired_url is None:
            return await self._finish(send, method, 410, _EXPIRED, started)
        headers = [(b"location", expired_url.url.encode()), _NO_STORE, (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        self._stats.responses[(method, 302)] += 1
        self._stats.latency.observe(time.perf_counter() - started)

    async def method_not_allowed(self, scope: dict, send) -> None:
        """Any method but GET and HEAD on a code path: 405 with `Allow`, counted, never recorded."""
        method = scope["method"] if scope["method"] in _COUNTED_METHODS else "OTHER"
        await self._finish(send, method, 405, _NOT_ALLOWED, time.perf_counter(), allow=True)

    async def _finish(
        self,
        send,
        method: str,
        status: int,
        body: bytes,
        started: float,
        retry_after: bool = False,
        allow: bool = False,
    ) -> None:
        headers = [
            (b"content-type", b"application/json"),
            _NO_STORE,
            (b"content-length", str(len(body)).encode()),
        ]
        if retry_after:
            headers.append((b"retry-after", b"1"))
        if allow:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        stats = self._stats
        stats.responses[(method, status)] += 1
        stats.latency.observe(time.perf_counter() - started)
