"""The `meterflow` command. Each subcommand lives in its own module and is imported on use,
so `meterflow cost` starts fast and never loads Kafka or database clients."""

from __future__ import annotations

import importlib
import os
import sys

import click

# name -> "module:attribute"; add a line here when adding a subcommand module.
COMMANDS: dict[str, str] = {
    "cost": "meterflow.cli.cost:cost",
    "rates": "meterflow.cli.quotes:rates",
    "slots": "meterflow.cli.quotes:slots",
    "schemas": "meterflow.cli.schemas:schemas",
    "db": "meterflow.cli.db:db",
    "sink": "meterflow.cli.sink:sink",
    "worker": "meterflow.cli.worker:worker",
    "produce": "meterflow.cli.produce:produce",
    "profiles": "meterflow.cli.profiles:profiles",
    "prices": "meterflow.cli.profiles:prices",
    "dlq": "meterflow.cli.dlq:dlq",
    "api": "meterflow.cli.api:api",
    "keys": "meterflow.cli.keys:keys",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # `meterflow keys list | head -1`: the reader has what it wants
            _quiet_stdout()
            raise click.exceptions.Exit(1) from None
        except Exception as error:
            from meterflow.cli.failures import outside_failure

            problem = outside_failure(error)
            if problem is None:
                raise  # a bug: its traceback is what to report
            raise click.ClickException(problem) from None


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what is left does not
    fail on the closed pipe again (the recipe of Python's `signal` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@click.group(cls=_LazyGroup)
@click.version_option(package_name="meterflow")
def main() -> None:
    """meterflow: price energy meter records as a stream."""
