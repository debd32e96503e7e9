"""Reading /metrics as Prometheus does (prometheus_client's own text parser), and what changed
between two scrapes."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]
METRICS_TOKEN = "scrape-token-for-tests"
SCRAPE_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def parse(text: str) -> dict[Sample, float]:
    """Every sample of a scrape: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


def moved(before: Mapping[Sample, float], after: Mapping[Sample, float], prefix: str = "chat_") -> dict[Sample, float]:
    """The samples whose value changed, by how much (a sample new in `after` counts from 0).
    Histogram buckets are left out: their _count and _sum say the same more briefly."""
    return {
        sample: after[sample] - before.get(sample, 0.0)
        for sample in after
        if sample[0].startswith(prefix)
        and not sample[0].endswith(("_bucket", "_created"))
        and after[sample] != before.get(sample, 0.0)
    }
