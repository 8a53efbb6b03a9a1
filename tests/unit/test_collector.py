"""Full collections are held off while an attributor run holds its working set, and come back after."""

import gc

import pytest

from attribution.collector import HELD_THRESHOLD, full_collections_held


def full_passes_while_keeping(objects: int) -> int:
    """Full collections CPython starts by itself while `objects` long-lived containers pile up."""
    passes = 0

    def count(phase: str, info: dict) -> None:
        nonlocal passes
        passes += phase == "start" and info["generation"] == 2

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
    gc.set_threshold(700, 10, 10)
    gc.collect()
    yield
    gc.set_threshold(*saved)


def test_a_growing_working_set_starts_full_collections_unless_held() -> None:
    assert full_passes_while_keeping(300_000) > 0  # the control: the default thresholds do start them
    gc.collect()
    with full_collections_held():
        assert full_passes_while_keeping(300_000) == 0
        assert gc.get_threshold() == (700, 10, HELD_THRESHOLD)
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_holds_give_the_thresholds_back_after_the_last() -> None:
    first, second = full_collections_held(), full_collections_held()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # runs need not end in the order they began
    assert gc.get_threshold()[2] == HELD_THRESHOLD
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_failing_run_gives_the_thresholds_back() -> None:
    with pytest.raises(RuntimeError), full_collections_held():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)
