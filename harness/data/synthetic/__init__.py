"""Deterministic generators that write stand-ins of real datasets, in the real datasets' formats."""
