"""The viewer's country for smart-link rules when no trusted header tells it: the same offline database
the ingester uses (geoip2fast, core/geo.py's file), loaded into the server only when a link with a country
rule is first served. Loading takes a moment and a few tens of MB, so it runs in a thread (the event loop
keeps answering other redirects) and once per worker; requests that need it meanwhile wait for that one
load. The full IP is looked up in memory and never kept."""

from __future__ import annotations

import asyncio
import gc
import logging
from functools import lru_cache

from core.geo import GEOIP_DATA_FILE
from core.validate import is_country

log = logging.getLogger("clicktrail.geo")

# Countries remembered per worker by client address (viewers click more than once; bounded).
COUNTRY_MEMO_ENTRIES = 65_536


class CountryLookup:
    def __init__(self) -> None:
        self._geoip = None
        self._loading: asyncio.Task | None = None
        self.lookup = lru_cache(maxsize=COUNTRY_MEMO_ENTRIES)(self._lookup)

    @property
    def loaded(self) -> bool:
        return self._geoip is not None

    async def ready(self) -> bool:
        """Load the database if not yet loaded (once per worker, in a thread); False if it cannot be."""
        if self._geoip is None:
            if self._loading is None:
                self._loading = asyncio.create_task(asyncio.to_thread(_load))
            try:
                self._geoip = await asyncio.shield(self._loading)
            except Exception:
                log.exception("the country database cannot be loaded: country rules see no country")
                self._loading = None  # a later request tries again
                return False
            # The database is a few huge lists that live as long as the process: a full collection
            # would walk their millions of entries (60 ms each time, measured). Out of the collector's
            # way, like everything made at start-up (app.py).
            gc.freeze()
        return True

    def _lookup(self, ip: str) -> str:
        """ISO 3166 alpha-2 of an address, "" when unknown (call after ready())."""
        if not ip or self._geoip is None:
            return ""
        try:
            code = self._geoip.lookup(ip).country_code
        except Exception:  # geoip2fast raises its own errors for a malformed address
            return ""
        return code if is_country(code) else ""


def _load():
    from geoip2fast import GeoIP2Fast  # here: the server imports it only for links with country rules

    return GeoIP2Fast(geoip2fast_data_file=GEOIP_DATA_FILE)
