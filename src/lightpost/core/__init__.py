"""The sans-I/O protocol core: pure functions and frozen dataclasses over bytes. No sockets, files,
threads or clocks (time is an argument); imports: stdlib, ``coincurve``, ``sha3``
(``tests/core/test_purity.py`` enforces it)."""
