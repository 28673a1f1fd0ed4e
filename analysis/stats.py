"""Seed statistics: one sample of a metric over seeds, and the noise rule every comparison uses.

A difference between two samples counts only when both have at least ``MIN_SEEDS`` seeds and the difference
exceeds ``K_SE`` times its standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)`` (about a 95% two-sided threshold
for a normal difference; with 2-3 seeds a t threshold would be wider, so this rule is, if anything, lenient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

MIN_SEEDS = 2
K_SE = 2.0


@dataclass(frozen=True)
class Sample:
    """A metric over seeds: the values and the job ids that produced them."""

    values: tuple[float, ...]
    job_ids: tuple[str, ...] = field(default=())

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> Sample:
        return cls(tuple(float(v) for v in rows["value"]), tuple(str(j) for j in rows["job_id"]))

    @property
    def n(self) -> int:
        return len(self.values)

    @cached_property  # (tables and claims read each cell's mean and spread many times)
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @cached_property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for one value, which carries no spread."""
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def var_of_mean(self) -> float:
        return self.std**2 / self.n if self.n else math.nan


def standard_error(*samples: Sample) -> float:
    """Standard error of a sum or difference of independent sample means."""
    return math.sqrt(sum(s.var_of_mean for s in samples))


def enough(*samples: Sample) -> bool:
    return all(s.n >= MIN_SEEDS for s in samples)
