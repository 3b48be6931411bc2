"""Development scripts (not packaged): a package so tests and benchmarks can ``import scripts.build_plugins``."""
