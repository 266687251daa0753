"""I/O adapters: JSON-RPC transport, SQLite store, the anvil process.

Each adapter sits behind a small interface so the node runtime can be tested with
scripted fakes. Third-party and OS exceptions are translated to lightpost errors here."""
