"""The append-only, hash-chained audit log: store, chain, verification and export."""
