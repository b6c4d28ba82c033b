"""Evidence queries (selectors): each reads the audit log or the system's state and writes one
population into the pack, with the exact selection and an independent count to reconcile."""
