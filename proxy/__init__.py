"""The gateway data path: the stage list (proxy.stages) and a module per stage, the per-method
handlers (proxy.handlers), JSON-RPC envelopes (proxy.jsonrpc), plus transports."""
