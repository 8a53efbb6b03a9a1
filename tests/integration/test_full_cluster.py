"""The whole cluster topology at once: the Redis Cluster (scripts/cluster-redis.sh) and the ClickHouse
cluster (scripts/cluster-clickhouse.sh) together, through the same end-to-end paths as one node: links,
redirects, ingestion, webhooks, attribution and earnings; discount codes, review and trace. Payouts on the
ClickHouse cluster: test_clickhouse_cluster.py (`test_payouts_on_the_cluster`)."""

from __future__ import annotations

import pytest

from tests.conftest import REDIS_CLUSTER_URL
from tests.integration import test_codes_review as codes
from tests.integration import test_end_to_end as e2e

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.cluster]


@pytest.fixture
def both(ch_cluster_settings, cluster_redis):
    """Settings naming both clusters (the test's own key prefix and database)."""
    return ch_cluster_settings.model_copy(update={"redis_cluster": True, "redis_url": REDIS_CLUSTER_URL})


def test_link_to_earnings(both, cluster_backend, cluster_redis) -> None:
    e2e.test_click_to_commission(both, cluster_backend, cluster_redis)


def test_codes_review_and_trace(both, cluster_backend, cluster_redis) -> None:
    codes.test_codes_priority_review_and_trace(both, cluster_backend, cluster_redis)
