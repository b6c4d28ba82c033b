"""The gateway data path: one module per pipeline stage, plus transports."""
