"""The built-in datasets, declared in ``catalog.yaml`` through the same mechanism as a study's own datasets
(``harness.data.declare``). Add a dataset: a layout reader (if new) and an entry there, or a ``datasets:``
section in a study file.

Real datasets are found by path (``HARNESS_DATA_<NAME>``, the data-roots file, see ``roots.py``, or a declared
``root``); synthetic ones are generated into the cache on first use, in the same layout as the real set they
stand in for.
"""

from __future__ import annotations

from harness.data.declare import load_catalog

load_catalog()
