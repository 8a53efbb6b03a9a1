"""ClickHouse access: the native-protocol client (production and ClickHouse 18.16 tests) and an in-process
chdb backend (tests against a current ClickHouse). Both take the same SQL with `%(name)s` parameters, so
every query the project runs is proven on both dialects.

The driver is synchronous; async callers run queries in a worker thread (`asyncio.to_thread`) so the
event loop never blocks on ClickHouse. It is imported when a client is first made, never at import time:
the redirect server imports this module for its API but must not load the driver until an API call needs
ClickHouse (tests/integration/test_layers.py). Its errors, and network errors, reach callers as
`ClickHouseError`."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit


class ClickHouseError(Exception):
    """ClickHouse could not answer: refused, unreachable, timed out, or a server error (the driver's own
    exception is the cause)."""


class PartsInDoubt(ClickHouseError):
    """Rows a replica may hold though ZooKeeper never recorded them could not be set aside yet
    (`Backend.settle_unknown_parts`): a reader of the ledger waits, having read and written nothing."""


class Backend(Protocol):
    database: str
    # Whether `execute` sends an `IdSet` parameter as an external table (below): no query size limit
    # applies to it, so a caller need not cut a long set into several queries (queries.chunked_rows).
    ships_id_sets: bool

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]: ...

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        """Insert column-oriented `data` (one sequence per column) as one block."""
        ...

    def settle_failed_inserts(self) -> None:
        """Finish what failed inserts left half-done, or raise (a cluster's rollups: core/cluster.py)."""
        ...

    def settle_unknown_parts(self) -> None:
        """Before a read whose rows are taken as the truth (the stored ledger): set aside rows a failed
        commit may have left where ZooKeeper never recorded them, or raise (core/orphanparts.py)."""
        ...

    def close(self) -> None: ...


# clickhouse-driver's escapes for a string literal (util/escape.py escape_chars_map), as one table.
_LITERAL_ESCAPES = str.maketrans(
    {
        "\b": "\\b",
        "\f": "\\f",
        "\r": "\\r",
        "\n": "\\n",
        "\t": "\\t",
        "\0": "\\0",
        "\a": "\\a",
        "\v": "\\v",
        "\\": "\\\\",
        "'": "\\'",
    }
)


class IdSet:
    """Ids for `column IN %(name)s`: strings, or unsigned 64-bit integers (`column_type="UInt64"`, the
    clicks' IP hashes). The native backends send them as an external table (a one-column temporary
    table the server receives with the query, `ship_id_sets`) and the query names that table: the
    server neither parses nor size-limits it, and reads 100,000 order ids in half the time of a literal
    list, their stored ledger in a sixth (docs/performance.md). Elsewhere (chdb) its `str` is the literal
    list the driver would have written: the driver escapes a string a character at a time in Python,
    `str.translate` does the same in C. The driver passes an object of a type it does not know through
    unchanged, and the query's `%` formatting then takes its `str`."""

    __slots__ = ("column_type", "ids")

    def __init__(self, ids: Iterable[str] | Iterable[int], column_type: str = "String") -> None:
        if column_type not in _LITERALS:
            raise ValueError(f"an id set holds String or UInt64, not {column_type}")
        self.ids = ids if isinstance(ids, list | tuple) else list(ids)
        self.column_type = column_type

    def __str__(self) -> str:
        if not self.ids:
            return "()"
        return _LITERALS[self.column_type](self.ids)


_LITERALS = {
    "String": lambda ids: "('" + "', '".join(i.translate(_LITERAL_ESCAPES) for i in ids) + "')",
    # int() and not the value's own str: a bool or an int subclass would not print as a number
    "UInt64": lambda ids: "(" + ", ".join(str(int(i)) for i in ids) + ")",
}


class _TableName:
    """An external table's name in a query. Not a `str`, which the driver would quote: it passes an
    object of a type it does not know through unchanged, as it does an IdSet."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


def ship_id_sets(params: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[dict] | None]:
    """`params` with each non-empty IdSet replaced by the name of an external table (`_ids_` and the
    parameter's name), and those tables as clickhouse-driver's `external_tables` takes them. An empty set
    stays a literal `()`: the protocol ends external data with an empty block, so an empty table is none."""
    if not params:
        return params, None
    tables = []
    shipped = dict(params)
    for key, value in params.items():
        if isinstance(value, IdSet) and value.ids:
            if not key.isidentifier():  # it becomes part of a table name in the query text
                raise ValueError(f"an id set's parameter must be a plain name, not {key!r}")
            name = f"_ids_{key}"
            shipped[key] = _TableName(name)
            tables.append(
                {"name": name, "structure": [("id", value.column_type)], "data": [(i,) for i in value.ids]}
            )
    return (shipped, tables) if tables else (params, None)


# Driver connections of one NativeClickHouse: the attributor's reads beside its inserts (attributor.py).
CONNECTIONS = 2


class NativeClickHouse:
    """clickhouse-driver over the native protocol. Thread-safe: each call is a whole query on a
    connection of its own, taken from up to CONNECTIONS (a driver connection runs one query at a
    time). A second connection is opened only when two calls overlap, as when the attributor inserts
    one chunk's ledger rows while it reads the next chunk's clicks. With standby hosts (`alt_hosts`):
    one connection, so that every call reaches the same server."""

    def __init__(
        self,
        url: str,
        database: str | None = None,
        insert_timeout_s: int = 20,
        alt_hosts: Sequence[str] = (),
    ) -> None:
        parts = urlsplit(url)
        self.database = database or parts.path.strip("/") or "clicktrail"
        # Connect to `default` so that `migrate` can create the database; queries name it explicitly.
        query = with_alt_hosts(parts.query, alt_hosts)
        server_url = urlunsplit((parts.scheme, parts.netloc, "/default", query, ""))
        from clickhouse_driver import Client, errors

        self._driver_errors = (errors.Error, OSError, EOFError)
        # With standby hosts, each driver connection fails over on its own and two could end up on two
        # servers: a read of the ledger on one would miss rows just inserted on the other, and a run
        # would book them again. One connection keeps every call on one server.
        connections = 1 if parse_qs(query).get("alt_hosts") else CONNECTIONS
        self._clients = []
        for _ in range(connections):
            client = Client.from_url(server_url)  # connects on its first query
            client.connection.send_receive_timeout = insert_timeout_s
            self._clients.append(client)
        # Last in, first out: while calls never overlap, they all use (and keep warm) one connection.
        self._closing = threading.Lock()
        self._idle: queue.LifoQueue = queue.LifoQueue()
        for client in reversed(self._clients):
            self._idle.put(client)

    ships_id_sets = True

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        params, tables = ship_id_sets(params)
        with self._client() as client, self._errors():
            return client.execute(sql, params, external_tables=tables)

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES"
        with self._client() as client, self._errors():
            return client.execute(sql, list(data), columnar=True)

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        client = self._idle.get()
        try:
            yield client
        finally:
            self._idle.put(client)

    def settle_failed_inserts(self) -> None:
        """Nothing: a non-replicated table has no block deduplication that could skip its views."""

    def settle_unknown_parts(self) -> None:
        """Nothing: without ZooKeeper, a part the server keeps is a part it has."""

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._driver_errors as exc:
            raise ClickHouseError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Disconnect every connection, once no call uses it (a later call connects again)."""
        with self._closing:  # two closes at once would each hold a connection the other waits for
            self._close()

    def _close(self) -> None:
        held = [self._idle.get() for _ in self._clients]
        try:
            for client in held:
                with contextlib.suppress(*self._driver_errors):
                    client.disconnect()
        finally:
            for client in held:
                self._idle.put(client)


def with_alt_hosts(query: str, alt_hosts: Sequence[str]) -> str:
    """A URL query that also names `alt_hosts` (`host:port`): the driver connects to the first of the
    URL's host and these that answers, again on every reconnect."""
    if not alt_hosts:
        return query
    return "&".join(part for part in (query, "alt_hosts=" + ",".join(alt_hosts)) if part)


class _EscapeContext:
    """What clickhouse-driver's escaping needs to know: only the time zone, used for datetimes."""

    server_info = None
    client_settings = {"use_client_time_zone": True}  # noqa: RUF012 - read-only stand-in


def _escape(params: dict) -> dict:
    from clickhouse_driver.util.escape import escape_params

    return escape_params(params, _EscapeContext())


class ChdbClickHouse:
    """A current ClickHouse in process (PyPI `chdb-core`), used by the tests to prove that the schema and
    the queries run unchanged on today's ClickHouse as on 18.16."""

    ships_id_sets = False  # a session query takes SQL text only

    def __init__(self, path: str, database: str = "clicktrail") -> None:
        from chdb import session  # imported lazily: a test-only dependency

        self.database = database
        self._session = session.Session(path)
        self._lock = threading.Lock()

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        if params:
            sql = sql % _escape(params)
        with self._lock:
            result = self._session.query(sql, "JSONCompact")
        text = result.bytes() if hasattr(result, "bytes") else bytes(result)
        if not text.strip():
            return []
        import orjson

        return [tuple(row) for row in orjson.loads(text)["data"]]

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        if not data or not len(data[0]):
            return 0
        rows = zip(*data, strict=True)
        values = ",".join(
            "(" + ",".join(str(v) for v in _escape(dict(enumerate(row))).values()) + ")" for row in rows
        )
        with self._lock:
            self._session.query(f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES {values}")
        return len(data[0])

    def settle_failed_inserts(self) -> None:
        """Nothing: as `NativeClickHouse`."""

    def settle_unknown_parts(self) -> None:
        """Nothing: as `NativeClickHouse`."""

    def close(self) -> None:
        with self._lock:
            self._session.close()
