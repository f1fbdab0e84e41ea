"""The command line, `python -m engine <command>`: `main` assembles one parser, `jobs` runs the job commands and
prints their outputs or one `error:` line, `serve` starts the engine server, `batch` runs a JSONL file of jobs, `models`
lists, downloads and removes models. The top layer: may import every other engine package
(the job commands themselves live in `commands/`, because batch lines run them too); nothing imports it."""
