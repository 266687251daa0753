"""The `lightpost` command line, on top of the node runtime."""
