"""The offline country database both the ingester (redirector/ingest/enrich.py) and the redirect's
country rules (redirector/geo.py) read, so both name the same country for the same address."""

from __future__ import annotations

# geoip2fast's file with IPv4 and IPv6 networks (country level), shipped inside the package.
GEOIP_DATA_FILE = "geoip2fast-ipv6.dat.gz"
