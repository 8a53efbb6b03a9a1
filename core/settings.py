"""The one settings object. Built once at start-up (`Settings.load()`) and passed down; nothing reads
the environment after that."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.validate import DEFAULT_CLICK_PARAM, is_click_param, is_utf8

# Where local state lives when nothing else is configured: beside the checkout, never in $HOME, so that
# two checkouts on one machine do not share a spool or a secret.
DEFAULT_DATA_DIR = Path(".clicktrail")
SECRET_FILE_NAME = "secret_key"
SECRET_KEY_BYTES = 32
# Variables that once were settings: set, they stop the start with what replaces them, so an operator's
# old value is never silently ignored.
REPLACED_VARIABLES = {
    "CLICKTRAIL_LINK_CACHE_SIZE": "CLICKTRAIL_LINK_CACHE_BYTES (the cache is sized in bytes, not links)",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLICKTRAIL_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "ct:"
    clickhouse_url: str = "clickhouse://default:@127.0.0.1:9000/clicktrail"
    admin_token: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    log_level: str = "warning"

    # Credential guessing (redirector/throttle.py): this many refused tokens (API or dashboard sign-in)
    # from one client address within the window, and that address gets 429 until the window ends.
    auth_max_failures: int = Field(20, ge=1)
    auth_failure_window_s: int = Field(900, ge=1)

    # Redirect path.
    # Bytes of packed links per worker (redirector/packed.py: about 200 bytes a link plus its URL's length
    # beyond 33, so the default holds about a million); 0 caches nothing.
    link_cache_bytes: int = Field(256 * 2**20, ge=0)
    # Changes reach the caches through the link-change stream within about a second (linkwatch.py);
    # the TTL only bounds how long an unchanged entry is trusted before it is read again.
    link_cache_ttl_ms: int = Field(600_000, ge=0)
    # At start-up each worker reads links into its cache until this many seconds have passed or the cache
    # is nearly full (redirector/preload.py), so a fresh worker does not read its first million requests
    # from Redis one miss at a time; /readyz says "warming" meanwhile. 0 turns it off.
    link_cache_preload_max_s: int = Field(60, ge=0)
    default_click_param: str = DEFAULT_CLICK_PARAM
    # A connection whose request head is not complete this long after it began is closed (408): uvicorn
    # has no header-read timeout, so slow clients (slowloris) would otherwise hold connections forever.
    header_timeout_ms: int = Field(5_000, ge=1)
    # Comma-separated in the environment ("10.0.0.0/8,192.168.0.1"), not JSON.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    country_header: str | None = None

    # Click recorder: a Redis write that takes longer than this is given up and the batch goes to the
    # spool, so that a paused Redis never holds a viewer on our page.
    redis_write_timeout_ms: int = Field(250, ge=1)
    # Likewise for reading a link that is not in the worker's cache: past this, the cached copy or a 503.
    redis_lookup_timeout_ms: int = Field(250, ge=1)
    recorder_max_batch: int = Field(2_000, ge=1)
    spool_retry_interval_ms: int = Field(1_000, ge=10)

    # Redis Cluster (docs/cluster.md): `redis_url` names any node of the cluster; keys are laid out for
    # it (core/keys.py). The click stream is split into this many shards there (one stream each, spread
    # over the primaries); at most core.keys.MAX_CLICK_SHARDS.
    redis_cluster: bool = False
    redis_click_shards: int = Field(6, ge=1, le=1024)
    # A redirect answers only after this many replicas hold its click (Redis WAIT after each batch),
    # else the batch goes to the spool; 0 answers once the primary has it.
    redis_min_replicas_acked: int = Field(0, ge=0)
    # Name every connection after its process and role (CLIENT SETNAME; core/redisclient.py). Off by
    # default: a Redis user whose ACL lacks +client|setname would have every connection refused.
    redis_client_names: bool = False

    # Ingestion.
    # Each ClickHouse insert has a fixed cost (50-110 ms on 18.16): 100k clicks per insert measured 1.5x
    # faster than 20k, for about 90 MB per batch in memory.
    ingest_batch_size: int = Field(100_000, ge=1)
    ingest_flush_interval_ms: int = Field(1_000, ge=1)
    # An entry pending this long is taken over from a consumer presumed dead. Must exceed the insert
    # timeout by a wide margin: see the ingester's docstring.
    ingest_claim_idle_ms: int = Field(60_000, ge=1_000)
    clickhouse_insert_timeout_s: int = Field(20, ge=1)
    # Processes an attributor run books in (attribution/lanes.py): 1 books on one thread; 2 used both
    # cores of a 2-core machine that also runs ClickHouse and Redis (docs/performance.md).
    attribution_workers: int = Field(1, ge=1, le=16)

    # ClickHouse cluster mode (docs/cluster.md): a cluster name from the servers' remote_servers (empty:
    # one node), and other `host:port` nodes to fail over to (comma-separated in the environment).
    clickhouse_cluster: str = ""
    clickhouse_alt_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Events out (attribution/outbox.py, attribution/delivery.py). Endpoint URLs must be https on public
    # addresses unless the operator allows otherwise (tests and local receivers need both).
    endpoints_allow_http: bool = False
    endpoints_allow_private: bool = False
    # A receiver gets this long to accept the connection and to answer; a slow one only delays itself.
    deliver_connect_timeout_ms: int = Field(5_000, ge=1)
    deliver_read_timeout_ms: int = Field(10_000, ge=1)
    # Standard Webhooks' usual retry period: after it, an event is dead-lettered with its last error.
    deliver_retry_period_s: int = Field(3 * 86_400, ge=1)
    deliver_max_response_bytes: int = Field(64 * 1024, ge=1)
    # Retries wait base × 2^(n-1), capped, with jitter (attribution/backoff.py).
    deliver_retry_base_ms: int = Field(5_000, ge=1)
    deliver_retry_cap_ms: int = Field(3_600_000, ge=1)
    # How often the worker looks for new events, endpoints and due retries when nothing woke it.
    deliver_poll_interval_ms: int = Field(500, ge=10)
    # Emitted events stay this long in the event stream: `replay {"since"}` reaches back this far.
    events_retention_days: int = Field(7, ge=1)
    # The web dashboard (/dash): a sign-in lasts this long (the session key's TTL in Redis), then the
    # API key is asked for again.
    dash_session_ttl_s: int = Field(43_200, ge=60)
    # The most of a worker's time dashboard pages take together (redirector/dash/pacing.py): past it,
    # pages wait for their turn and redirects never do. 100: pages only take turns.
    dash_max_share_pct: int = Field(5, ge=1, le=100)

    @field_validator("*")
    @classmethod
    def _check_utf8(cls, value: object, info: ValidationInfo) -> object:
        # Python reads the environment with surrogateescape: bytes that are not UTF-8 arrive as lone
        # surrogates, which no UTF-8 encode takes. Unchecked, they failed far from the setting: a 500 on
        # every link answer (public_url, after the link was stored), a traceback at start-up (admin_token),
        # or an ingester retrying for ever (a Redis URL).
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not is_utf8(text):
                raise ValueError(f"{info.field_name} holds bytes that are not UTF-8")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("clickhouse_alt_hosts", mode="before")
    @classmethod
    def _split_alt_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("clickhouse_alt_hosts")
    @classmethod
    def _check_alt_hosts(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _node_ok(address, port_required=True):
                raise ValueError(f"clickhouse_alt_hosts: {address!r} is not host:port")
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _check_cluster(cls, value: str) -> str:
        if value and not (value.isascii() and value.replace("_", "").isalnum()):
            raise ValueError("clickhouse_cluster must be a plain name (letters, digits, _)")
        return value

    @field_validator("clickhouse_url", "redis_url")
    @classmethod
    def _check_store_url(cls, value: str, info: ValidationInfo) -> str:
        # Anything else was read as the default server with the text for a database name: `migrate`
        # created a database called `notaurl` on localhost.
        schemes, form = _STORE_URLS[info.field_name]
        parts = urlsplit(value)
        nodes = parts.netloc.rsplit("@", 1)[-1].split(",")  # a Redis Cluster URL names several
        located = parts.hostname or (info.field_name == "redis_url" and parts.path)  # unix:///path
        if parts.scheme not in schemes or not located or not all(_node_ok(n) for n in nodes if n):
            raise ValueError(f"{info.field_name} must be {form}, each port 1-65535")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise ValueError("redis_prefix must be non-empty without whitespace")
        return value

    @field_validator("default_click_param")
    @classmethod
    def _check_click_param(cls, value: str) -> str:
        # It goes into every Location header: a newline there would make each redirect an empty reply.
        if not is_click_param(value):
            raise ValueError("default_click_param must be 1-64 characters of A-Z a-z 0-9 _ . -")
        return value

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read the environment once and fill in the generated secret if none is configured."""
        for name, replacement in REPLACED_VARIABLES.items():
            if name in os.environ:
                raise ValueError(f"{name} is no longer read: set {replacement}")
        settings = cls(**overrides)
        if not settings.secret_key:
            settings.secret_key = _local_secret(settings.data_dir)
        return settings

    @property
    def secret_bytes(self) -> bytes:
        assert self.secret_key, "Settings.load() fills the secret"
        return self.secret_key.encode()

    @property
    def clickhouse_database(self) -> str:
        name = urlsplit(self.clickhouse_url).path.strip("/")
        return name or "clicktrail"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"


# The schemes each store's URL may have, and its form as an error message says it.
_STORE_URLS = {
    "clickhouse_url": (("clickhouse", "clickhouses"), "clickhouse://user:password@host:port/database"),
    "redis_url": (("redis", "rediss", "unix"), "redis://host:port/db, rediss://... or unix:///path"),
}


def _node_ok(node: str, port_required: bool = False) -> bool:
    """`host`, `host:port` or `[v6]:port` with the port in 1-65535: a port that is not one failed later,
    with a traceback."""
    try:
        parts = urlsplit(f"//{node}")
        port = parts.port
    except ValueError:
        return False
    return bool(parts.hostname) and ((port is None and not port_required) or (port is not None and port > 0))


def _local_secret(data_dir: Path) -> str:
    """Generate the secret into the data dir on first run; every later run (and every worker) reads it."""
    path = data_dir / SECRET_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    candidate = secrets.token_urlsafe(SECRET_KEY_BYTES)
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    tmp.write_text(candidate + "\n")
    tmp.chmod(0o600)
    try:
        # link() fails if another worker won the race; then everyone uses the winner's secret.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
