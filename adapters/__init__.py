"""Channel adapters: one module per native format, each a pure parse plus a small transport."""
