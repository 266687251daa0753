"""The device node runtime: the only place that wires the protocol core to adapters."""
