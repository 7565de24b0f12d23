"""The async shell that executes the core's decisions: `runner` (run, reload, stop and the
dispatcher), `poller` (one request and its outcome), `discovery_loop`, `parking`, `sources` (one
key and budget each), `settings`, `checkpoint` (the state file) and `service` (assembly from a
`Config`)."""
