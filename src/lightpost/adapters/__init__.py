"""I/O adapters (JSON-RPC transport, SQLite store, the anvil process) behind small interfaces the
runtime's tests script; third-party and OS exceptions become lightpost errors here."""
