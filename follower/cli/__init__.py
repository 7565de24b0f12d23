"""The command line: `entry` (the console script: the process's signals before and after a
command), `main` (logging, exit codes; `follower run`), `parser` (argparse), `interactive`
(`tail`, `pipelines`), `check` and `demo`."""
