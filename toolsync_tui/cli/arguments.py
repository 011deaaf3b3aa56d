"""Options anywhere on the command line: `toolsync run users --dry-run FILE` as well as `toolsync run --dry-run users
FILE`, and `--config` after the command too (`toolsync run users --config site.toml`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CONFIG_HELP = (
    "configuration file (default: $TOOLSYNC_CONFIG, ~/.config/toolsync/toolsync.toml, else the embedded sandbox)"
)


class IntermixedParser(argparse.ArgumentParser):
    """A command's parser whose options and positionals may come in any order. Plain argparse gives an optional
    positional (run's FILE) only the words before the first option: `run users --dry-run FILE` was refused."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # parse_known_intermixed_args parses in two passes through this very method; a command that has commands of
        # its own (sandbox init, categories clean) parses as usual, its commands intermixed in turn.
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_config_option(parser: argparse.ArgumentParser, *, default: Any = None) -> None:
    parser.add_argument("--config", type=Path, default=default, help=CONFIG_HELP)


def config_option_everywhere(parser: argparse.ArgumentParser) -> None:
    """--config on every command too; SUPPRESS: a command's --config, when given, replaces the one before it, and
    leaves it alone otherwise."""
    for command in _commands(parser):
        add_config_option(command, default=argparse.SUPPRESS)


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                yield command
                yield from _commands(command)
