"""The command line: `main` (argparse, logging, exit codes, the only sys.exit; `follower run`),
`interactive` (`tail`, `pipelines`), `check` and `demo`."""
