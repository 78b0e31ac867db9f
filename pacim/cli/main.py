"""The `pacim` command line: thin: parse, call the API, print. User errors exit 2, one line.

Every command lives in its own module and is imported only when it runs or is listed, so
`pacim simulate` pays for nothing else. The error boundary is `PacimGroup.main`: user errors
(PacimError, OSError, MemoryError, ValueError, a corrupt archive or pickle, a usage error) print
one line `error: ...` on stderr and exit 2; anything else is a bug and keeps its traceback
(exit 1). Writing the results to a full disk or a closed pipe on stdout is handled there too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import PacimError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `pacim ... | head`

# command name -> "module:attribute", imported when used or listed
LAZY_COMMANDS = {
    "simulate": "pacim.cli.simulate:simulate_command",
    "energy": "pacim.cli.energy:energy_command",
    "area": "pacim.cli.energy:area_command",
    "error-study": "pacim.cli.error_study:error_study_command",
    "sweep": "pacim.cli.sweep:sweep_command",
    "plot": "pacim.cli.sweep:plot_command",
    "llm": "pacim.llm.cli:llm_group",
    "accuracy": "pacim.accuracy:accuracy_command",
    "data": "pacim.accuracy.cli:data_group",
    "train": "pacim.accuracy.train.cli:train_command",
    "calibrate-thresholds": "pacim.accuracy.thresholds:calibrate_command",
}

# exceptions a user's input or environment causes; anything else is a bug (traceback, exit 1)
USER_ERRORS: tuple[type[BaseException], ...] = (
    PacimError, OSError, MemoryError, ValueError, EOFError, zipfile.BadZipFile,
    pickle.UnpicklingError,
)


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def os_error_text(e: OSError) -> str:
    """'path: reason' of an OSError (the path it names, if any, first)."""
    why = e.strerror or str(e) or type(e).__name__
    if e.filename is None:
        return why
    other = f" -> {e.filename2}" if getattr(e, "filename2", None) else ""
    return f"{e.filename}{other}: {why}"


def user_error_message(e: BaseException) -> str | None:
    """The one-line message of a user error, or None when `e` is a bug."""
    if isinstance(e, PacimError):
        text = str(e)
    elif isinstance(e, MemoryError):
        text = f"out of memory: {e}" if str(e) else "out of memory"
    elif isinstance(e, OSError):
        text = os_error_text(e)
    elif isinstance(e, zipfile.BadZipFile):
        text = f"not a valid or complete zip/.npz archive: {e}"
    elif isinstance(e, pickle.UnpicklingError):
        text = f"not a valid pickle: {e}"
    elif isinstance(e, EOFError):
        text = f"unexpected end of file{': ' + str(e) if str(e) else ''}"
    elif isinstance(e, ValueError):
        text = str(e) or type(e).__name__
    else:
        return None
    return one_line(text) or type(e).__name__


class WatchedStdout:
    """sys.stdout as it was, remembering the OSError a write or flush raised: that error is then
    known to be stdout's (a full disk, a closed pipe), not a file's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's own flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _say(msg: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        click.echo(msg, err=True)


def guarded(fn: Callable[[], Any]) -> int:
    """Run a command body; map user errors to one line on stderr and an exit status."""
    out = sys.stdout = WatchedStdout(sys.stdout)
    try:
        rv = fn()
        out.flush()
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except click.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt):
            _say("interrupted")
            return EXIT_INTERRUPTED
        _say("aborted")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except click.ClickException as e:
        hint = ""
        ctx = getattr(e, "ctx", None)
        if isinstance(e, click.UsageError) and ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        _say(f"error: {one_line(e.format_message())}{hint}")
        return EXIT_USAGE
    except USER_ERRORS as e:
        if e is out.error:  # the results could not be printed
            _silence_stdout()
            if e.errno == errno.EPIPE:
                return EXIT_BROKEN_PIPE  # the reader went away (`| head`): nothing to say
            _say(f"error: cannot write to standard output: {os_error_text(e)}")
            return EXIT_USAGE
        _say(f"error: {user_error_message(e)}")
        return EXIT_USAGE
    finally:
        if sys.stdout is out:
            sys.stdout = out._stream


class PacimGroup(click.Group):
    """A click group whose commands turn user errors into one line on stderr and exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            mod, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(mod), attr), name)
        return super().get_command(ctx, name)

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """click's main behind the error boundary (standalone_mode=False: no boundary)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        sys.exit(guarded(lambda: super(PacimGroup, self).main(
            args, prog_name, complete_var, standalone_mode=False, **extra)))


@click.group(cls=PacimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pacim")
def main() -> None:
    """pacim: cycle-level compute-in-memory simulator.

    \b
    Examples:
      pacim simulate --arch arch_configs/pacim_65nm.yaml --workload resnet18
      pacim simulate --arch arch_configs/dcim_65nm.yaml --workload resnet18 --no-data
      pacim energy --arch arch_configs/jia_bpbs_65nm.yaml --set technology.vdd=0.85
    """


def run() -> None:  # pragma: no cover - console entry convenience
    """Entry point that never shows a traceback for user errors."""
    main(prog_name=Path(sys.argv[0]).name or "pacim")
