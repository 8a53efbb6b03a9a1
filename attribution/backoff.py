"""When a failed event delivery is tried again: exponential backoff with jitter, given up (dead-lettered)
once the next try would fall past the retry period. Pure: the clock and the randomness are passed in."""

from __future__ import annotations


def retry_delay_ms(failures: int, jitter: float, base_ms: int, cap_ms: int) -> int:
    """Delay after the `failures`-th failure in a row (1, 2, ...): base × 2^(failures-1), at most `cap_ms`,
    then "equal jitter": half of it fixed and half drawn (`jitter` in [0, 1)), so retries of many events
    that failed together spread out without any waiting less than half its step."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    ceiling = min(cap_ms, base_ms << min(failures - 1, 62))
    half = ceiling // 2
    return half + int((ceiling - half) * jitter)


def next_attempt_ms(
    failures: int,
    first_attempt_ms: int,
    now_ms: int,
    jitter: float,
    *,
    base_ms: int,
    cap_ms: int,
    period_ms: int,
) -> int | None:
    """The time of the next try, or None when it would come more than `period_ms` after the first try:
    then the event is dead-lettered with its last error."""
    at_ms = now_ms + retry_delay_ms(failures, jitter, base_ms, cap_ms)
    return None if at_ms - first_attempt_ms > period_ms else at_ms
