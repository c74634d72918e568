"""One worker's /metrics at national dimensions stays within the scrape budget (docs/metrics.md):
at most 100,000 samples (the sample_limit deploy/prometheus sets) and 1 MB gzip-compressed."""

from __future__ import annotations

from bench.scrape_budget import measure, national_totals
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.prometheus import SAMPLE_LIMIT


def test_a_worker_at_national_dimensions_stays_within_the_scrape_budget() -> None:
    chain = load_chain()
    figures = measure(chain, [national_totals(chain)])
    assert 20_000 < figures["series"] <= SAMPLE_LIMIT  # every allowed combination is exported
    assert figures["text_gzip_bytes"] <= 1_000_000
