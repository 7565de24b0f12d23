"""Operating the daemon: the ops server (`server`: /metrics, /healthz), the Prometheus
`metrics`, and our own `diagnostics` (structlog on stderr, never the data events)."""
