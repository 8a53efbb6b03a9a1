"""Which insert failures are the block's own values (the consumer dead-letters their entry) and which a
retry outlives (the consumer waits and sends again): core/clickhouse.py `is_data_error`."""

from __future__ import annotations

import struct

import pytest
from clickhouse_driver import errors

from core.clickhouse import ClickHouseError, is_data_error


def _wrapped(exc: BaseException) -> ClickHouseError:
    """As the backends raise a driver error: ours, with the driver's as its cause."""
    try:
        raise ClickHouseError(f"{type(exc).__name__}: {exc}") from exc
    except ClickHouseError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # The driver, serialising the block: nothing was sent, and it never will be.
        (_wrapped(errors.TypeMismatchError("Column variant: short format requires ...")), True),
        (_wrapped(errors.ServerException("Type mismatch", code=53)), True),
        (AttributeError("'NoneType' object has no attribute 'encode'"), True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
        (TypeError("an integer is required"), True),
        (OverflowError("int too big to convert"), True),
        (struct.error("ushort format requires 0 <= number <= 65535"), True),
        # Away, slow or busy: a retry outlives them.
        (_wrapped(errors.NetworkError("Connection refused")), False),
        (_wrapped(errors.SocketTimeoutError("timed out")), False),
        (_wrapped(ConnectionRefusedError(111, "Connection refused")), False),
        (_wrapped(EOFError("Unexpected EOF while reading bytes")), False),
        (TimeoutError("timed out"), False),
        (_wrapped(errors.ServerException("Memory limit exceeded", code=241)), False),
        (_wrapped(errors.ServerException("Too many parts", code=252)), False),
        (_wrapped(errors.ServerException("Table is in readonly mode", code=242)), False),
        (_wrapped(errors.ServerException("Unknown status, client must retry", code=319)), False),
        # A view throwing part-way through a block: parts were written, the block must be finished.
        (_wrapped(errors.ServerException("Value passed to 'throwIf' function is non zero", code=395)), False),
        (ClickHouseError("no replica of shard 1 took the block: ..."), False),
    ],
)
def test_is_data_error(exc: BaseException, expected: bool) -> None:
    assert is_data_error(exc) is expected
