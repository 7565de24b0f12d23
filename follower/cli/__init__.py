"""The command line: `main` (logging, exit codes, the only sys.exit; `follower run`), `parser`
(argparse), `interactive` (`tail`, `pipelines`), `check` and `demo`."""
