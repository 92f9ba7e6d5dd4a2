"""One module per subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``.

To add a subcommand, write ``matalu/commands/<name>.py`` and list it in ``COMMANDS``."""

COMMANDS = ["ingest", "manifests", "sources", "texts", "diarize", "der", "codec", "encode", "jobs", "lm"]
