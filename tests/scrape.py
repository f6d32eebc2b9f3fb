"""Reading a server's /metrics in tests, parsed by prometheus-client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Scrape:
    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """One sample's value; KeyError (with the near misses) when it is not there."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            near = [dict(lbl) for n, lbl in self.samples if n == name]
            raise KeyError(f"{name}{labels} not exported; {name} has {near}")
        return self.samples[key]

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), default)

    def total(self, name: str, **labels: str) -> float:
        """Sum over the samples of ``name`` that carry ``labels`` (and any others)."""
        wanted = set(labels.items())
        return sum(v for (n, lbl), v in self.samples.items() if n == name and wanted <= lbl)


def scrape(url: str, headers: dict[str, str] | None = None) -> Scrape:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    response.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(response.text, samples)
