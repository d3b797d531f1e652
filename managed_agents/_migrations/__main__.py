"""``python -m managed_agents._migrations [--url URL] <alembic command> ...``: Alembic's command line
with this project's configuration (e.g. ``revision --autogenerate -m "..."``, ``current``, ``history``)."""

from __future__ import annotations

import sys

from alembic.config import CommandLine

from managed_agents._migrations import alembic_config


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    url = None
    if args[:1] == ["--url"] and len(args) >= 2:
        url, args = args[1], args[2:]
    cli = CommandLine(prog="python -m managed_agents._migrations [--url URL]")
    options = cli.parser.parse_args(args)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cli.run_cmd(alembic_config(url), options)


if __name__ == "__main__":
    main()
