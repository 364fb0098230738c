"""The ``vaereg`` command group: vaereg's own errors become one line (exit 2 for usage errors, 1
otherwise), a skipped or deprecated plugin one ``note:`` line. The commands live beside it:
``run`` (eval, train), ``plugins`` (plugins, check-plugin), ``store`` (results, report),
``sample``."""

from __future__ import annotations

import warnings

import click

from vaereg import UsageError, VaeregError
from vaereg.registry import PluginLoadWarning
from vaereg_harness.launch import distributed, signals


def show_plugin_note(message, category, filename, lineno, file=None, line=None):
    """A skipped or deprecated plugin is one line on stderr, not a warning with its source."""
    if issubclass(category, PluginLoadWarning):
        click.echo(f"note: {message}", err=True)
    else:
        default_showwarning(message, category, filename, lineno, file, line)


default_showwarning = warnings.showwarning
warnings.showwarning = show_plugin_note


class Group(click.Group):
    """Turns vaereg's own errors into one-line messages: exit 2 for usage errors, 1 otherwise;
    SIGINT and SIGTERM into one line saying what was saved, exit 130 and 143. Under torchrun a
    message names the rank it comes from, and the process group is left at the end."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse an argument that is not valid UTF-8 (bytes the file system name did not decode
        arrive as surrogates), before any command sees it."""
        bad = next((a for a in args if a.encode(errors="replace").decode() != a), None)
        if bad is not None:
            raise click.UsageError(f"the argument {bad!r} is not valid UTF-8; give every argument in UTF-8", ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            with signals.handled():
                return super().invoke(ctx)
        except signals.Stopped as stop:
            click.echo(f"vaereg: {ranked(stop.message())}", err=True)
            ctx.exit(stop.exit_code)
        except UsageError as exc:  # with the subcommand's usage line, as click's own errors have
            raise click.UsageError(ranked(str(exc)), command_context(ctx)) from None
        except VaeregError as exc:
            raise click.ClickException(ranked(str(exc))) from None
        except RuntimeError as exc:
            if not distributed.lost_contact(exc):
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(ranked(
                f"lost contact with another rank of the job ({first}); torchrun's summary names the rank that "
                f"failed; run again with --resume to continue from the last checkpoint")) from None
        except OSError as exc:  # the file system refused: one line naming the path, never a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(ranked(f"{where}{exc.strerror or exc}")) from None
        finally:
            distributed.stop()


def command_context(ctx: click.Context) -> click.Context:
    """A context of the subcommand ``ctx`` was invoking (for its usage line), or ``ctx``."""
    name = ctx.invoked_subcommand or (ctx.protected_args[0] if getattr(ctx, "protected_args", None) else None)
    command = ctx.command.get_command(ctx, name) if name else None
    return click.Context(command, info_name=name, parent=ctx) if command else ctx


def ranked(message: str) -> str:
    world = distributed.current()
    return f"rank {world.rank}: {message}" if world.size > 1 else message


@click.group(cls=Group)
@click.version_option(package_name="vaereg")
def main() -> None:
    """vaereg: assemble, train and evaluate variational autoencoders from registered parts."""
