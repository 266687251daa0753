"""The sans-I/O protocol core.

Pure functions and frozen dataclasses over bytes. Nothing in this package opens a
socket or a file, starts a thread or reads a clock: the current time is an argument.
Allowed imports: the standard library, ``coincurve`` and ``sha3`` (safe-pysha3);
``tests/core/test_purity.py`` enforces it."""
