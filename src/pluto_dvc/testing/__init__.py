"""Builders of small, exact test data shared by the tests and the benchmarks.

``log_factory`` (nuPlan log tables), ``map_factory`` (map GeoPackage layers), ``feature_factory``
(a scene for the feature builder), ``synthetic_factory`` (the tiny synthetic dataset) and
``cache_fakes`` (a fake feature source for the cache). Part of the package so that benchmarks and
worker processes import them by name, without reaching into ``tests/``.
"""
