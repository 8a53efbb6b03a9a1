"""Full collections are held off while an attributor run holds its working set, and come back after."""

import asyncio
import contextlib
import gc

import pytest

from attribution.collector import HELD_THRESHOLD, HELD_YOUNG, HOLDS, full_collections_held, holding

pytestmark = pytest.mark.skipif(not HOLDS, reason="CPython 3.14+ ignores the oldest generation's threshold")

DEFAULT = (700, 10, 10)


def full_passes_while_keeping(objects: int, generation: int = 2) -> int:
    """Collections of `generation` CPython starts by itself while `objects` long-lived containers pile
    up."""
    passes = 0

    def count(phase: str, info: dict) -> None:
        nonlocal passes
        passes += phase == "start" and info["generation"] == generation

    kept = []
    gc.callbacks.append(count)
    try:
        for n in range(objects):
            kept.append([n])
    finally:
        gc.callbacks.remove(count)
    return passes


@pytest.fixture(autouse=True)
def default_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(*DEFAULT)
    gc.collect()
    yield
    gc.set_threshold(*saved)
    assert holding() == 0, "a test left a hold behind"


def test_a_growing_working_set_starts_full_collections_unless_held() -> None:
    # A full pass starts once survivors grow by a quarter of the long-lived heap: keep more than it holds.
    objects = max(300_000, len(gc.get_objects()))
    assert full_passes_while_keeping(objects) > 0  # the control: the default thresholds do start them
    gc.collect()
    with full_collections_held():
        assert full_passes_while_keeping(objects) == 0
        assert gc.get_threshold() == (HELD_YOUNG, DEFAULT[1], HELD_THRESHOLD)
    assert gc.get_threshold() == DEFAULT


def test_young_collections_are_spaced_out_while_held() -> None:
    objects = 200_000
    assert full_passes_while_keeping(objects, generation=0) > objects // 1_000  # the control: every 700
    gc.collect()
    with full_collections_held():
        assert full_passes_while_keeping(objects, generation=0) <= objects // HELD_YOUNG + 1


def test_a_higher_young_threshold_of_the_process_is_kept_while_held() -> None:
    gc.set_threshold(50_000, 10, 10)
    with full_collections_held():
        assert gc.get_threshold() == (50_000, 10, HELD_THRESHOLD)
    assert gc.get_threshold() == (50_000, 10, 10)


def test_overlapping_holds_give_the_thresholds_back_after_the_last() -> None:
    with contextlib.ExitStack() as first, contextlib.ExitStack() as second:
        first.enter_context(full_collections_held())
        second.enter_context(full_collections_held())
        first.close()  # runs need not end in the order they began
        assert gc.get_threshold() == (HELD_YOUNG, DEFAULT[1], HELD_THRESHOLD)
    assert gc.get_threshold() == DEFAULT


def test_a_failing_or_cancelled_run_gives_the_thresholds_back() -> None:
    for error in (RuntimeError("the run failed"), asyncio.CancelledError()):
        with pytest.raises(type(error)), full_collections_held():
            raise error
        assert gc.get_threshold() == DEFAULT


def test_thresholds_set_during_a_run_are_kept() -> None:
    with full_collections_held():
        gc.set_threshold(5_000, 20, 30)  # someone else's choice, made while the run held
    assert gc.get_threshold() == (5_000, 20, 30)
