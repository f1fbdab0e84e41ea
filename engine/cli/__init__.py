"""The command line, `python -m engine <command>`: `main` assembles one parser from the command modules, `serve`
starts the engine server, `batch` runs a JSONL file of jobs. The top layer: may import every other engine package
(the job commands themselves live in `commands/`, because batch lines run them too); nothing imports it."""
