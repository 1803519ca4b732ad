"""The ``satclip`` command line: one module per subcommand, registered in ``COMMANDS``.

Each command module defines ``add_parser(subparsers)`` (which sets ``func`` on its parser) and is
imported lazily, so ``satclip --help`` stays fast and light.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import signal
import sys
import threading
import traceback

from .. import interrupts, safe_output
from ..errors import EXIT_INTERRUPTED, EXIT_RUNTIME
from .boundary import cli_logging, describe

#: subcommand name → module (relative to this package) defining add_parser()
COMMANDS = {
    "demo": ".demo",
    "convert": ".convert",
    "evaluate": ".evaluate",
    "embed": ".embed",
    "map": ".map",
    "export": ".export",
    "locate": ".locate",
    "data": ".data",
    "cache": ".cache",
    "train": ".train",
    "retrieval": ".retrieval",
}


EPILOG = """\
exit status: 0 success; 1 runtime failure (download, missing extra, untrusted checkpoint, disk full,
permission, lock held by another run, bad resume state, unexpected error); 2 bad input (an argument,
file or value; the message says what would work); 130 interrupted (Ctrl-C, SIGTERM). Errors are one
line on stderr; --debug (or SATCLIP_DEBUG=1) shows the traceback instead, with the same exit status
(a mistake in the arguments themselves stays one line: its traceback would be argparse's)."""


#: reStructuredText markup in module docstrings used as descriptions: ``literal`` and :role:`target`
_RST = re.compile(r"``(.+?)``|:[a-z]+:`~?([^`]+)`")


class Parser(argparse.ArgumentParser):
    """argparse with plain-text help (docstrings' RST markup removed), a did-you-mean for a misspelt
    choice (``satclip embedd`` → "did you mean 'embed'?") and errors of one line, as every other error of
    the CLI (not argparse's usage block), also for an OSError of a type's look at the file system (a name too
    long for it). Subcommand parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        # no prefixes of options: `--over` was taken for --overwrite and `--out` for --output, without a word
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # a value like "-1/2" (--shard) or "-1," / "-1,3" (--seeds) is read as the option's value, as "-1" is, and
        # refused by its type with the range it needs, not as an unknown option ("expected one argument")
        self._negative_number_matcher = re.compile(r"^-\d+(/\d+)?$|^-\d*\.\d+$|^-\d+(,[-\d]*)+$")

    def format_help(self) -> str:
        return _RST.sub(lambda m: m[1] or m[2], super().format_help())

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _get_value(self, action: argparse.Action, arg_string: str):
        try:
            return super()._get_value(action, arg_string)
        except OSError as err:  # a path type's look at the file system: a name too long for it (ENAMETOOLONG), …
            raise argparse.ArgumentError(action, describe(err)[1]) from None

    def _check_value(self, action: argparse.Action, value) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as err:
            from ..registry import did_you_mean
            from .precision_option import ALIASES, canonical

            known = [str(c) for c in action.choices or ()]
            if action.type is canonical:  # (--precision fp33: "did you mean 'fp32'?", which it takes too)
                known += list(ALIASES)
            hint = did_you_mean(str(value), known)
            if not hint:
                raise
            raise argparse.ArgumentError(action, f"{err.message}; {hint}") from None


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(
        prog="satclip", description="SatCLIP location embeddings: load, embed, train, evaluate.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"satclip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    debug_help = "on an error past the arguments, show the full traceback (as SATCLIP_DEBUG=1 does)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module, __package__).add_parser(subparsers)
    _accept_debug_anywhere(parser)
    return parser


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command's parser ``args`` were parsed by: ``satclip cache build``'s, not ``satclip cache``'s."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(args, sub.dest, None) not in sub.choices:
            return parser
        parser = sub.choices[getattr(args, sub.dest)]


def _accept_debug_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``--debug`` also follow a (sub)command: ``satclip embed … --debug`` is what people type."""
    for action in parser._actions:  # argparse has no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                # SUPPRESS: absent unless given, so it never overwrites a --debug given before the command
                sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _accept_debug_anywhere(sub)


#: control characters (but line breaks and tabs) as escapes in error lines: a message quoting a file's bytes
#: (a CSV row that does not parse) sent its terminal escape sequences to the user's terminal
_CONTROL_CHARACTERS = {c: f"\\x{c:02x}" for c in (*range(32), 127) if chr(c) not in "\n\t"}


def _no_news(signum, frame) -> None:
    """The SIGCHLD handler of an interrupted command: its children's ends are expected."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a scheduler or ``kill`` stopping the run) is an interruption like Ctrl-C for the block: the
    command's clean-up runs (temporaries removed, locks released) and it exits 130 saying so, instead of
    dying at once with status 143. Only where SIGTERM has its default action, in the main thread. A process
    forked meanwhile (a DataLoader's or a pool's worker) inherits the handler but not the command's clean-up: a
    SIGTERM ends it as by default, where a KeyboardInterrupt printed its traceback."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    command = os.getpid()

    def interrupt(signum, frame):
        if os.getpid() != command:  # a forked worker: its parent cleans up
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        # the DataLoader workers the same SIGTERM ended (sent to the process group) are no news: torch's child-death
        # handler raised "DataLoader worker … is killed by signal" wherever the unwinding had got to, printed as
        # "Exception ignored in … __del__" with its traceback. (A handler, not the default action: Python reports
        # a signal that arrived under a handler it no longer has.)
        if getattr(signal.getsignal(signal.SIGCHLD), "__module__", "").startswith("torch.utils.data"):
            signal.signal(signal.SIGCHLD, _no_news)
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is interrupt:  # (not once the command has finished: ignored then)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _ignore_late_signals() -> None:
    """Ignore Ctrl-C and SIGTERM from now on: the command has finished, and the process only exits (torch's
    shut-down takes a few hundred ms). One arriving then exited 130 or died by the signal after the output had
    been written and reported. Ignored, not handled: the interpreter's shut-down puts Python handlers back to
    the default action, and keeps an ignored signal ignored."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


#: the exit status of a command whose output's reader went away: a shell's for a command ended by SIGPIPE (128 + 13)
EXIT_BROKEN_PIPE = 141


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it as Python exits fails no more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # (no real stdout: a test's capture)
        pass


def _replace_unencodable_output() -> None:
    """Write what standard output's encoding cannot (a ``°`` or ``—`` under ``PYTHONIOENCODING=latin-1`` or a C
    locale outside UTF-8 mode) as escapes, as Python does on standard error: the last line of a finished command
    raised UnicodeEncodeError, and the command exited 2 as if its input were bad."""
    with contextlib.suppress(AttributeError, ValueError):  # (no real stdout: a test's capture)
        sys.stdout.reconfigure(errors="backslashreplace")


class _NamedStdout:
    """Standard output whose failures to write (a full disk behind ``> out.txt``, ``> /dev/full``) name it: they
    were "disk full while writing the output" of an output written whole. A closed pipe stays BrokenPipeError."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        with self._named():
            return self._stream.write(text)

    def flush(self) -> None:
        with self._named():
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    @staticmethod
    @contextlib.contextmanager
    def _named():
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as err:
            if err.filename is not None:
                raise
            raise OSError(err.errno, err.strerror, "standard output") from err


@contextlib.contextmanager
def _named_stdout():
    """Standard output as :class:`_NamedStdout` within the block."""
    stream, sys.stdout = sys.stdout, _NamedStdout(sys.stdout)
    try:
        yield
    finally:
        sys.stdout = stream


#: the values of $SATCLIP_DEBUG that turn debug on, and off (empty too); any case
_DEBUG_ON = ("1", "true", "yes", "on")
_DEBUG_OFF = ("0", "false", "no", "off")


def _debug_from_environment() -> bool:
    """Whether $SATCLIP_DEBUG turns debug on; a value neither on nor off is named on stderr and is off
    (``SATCLIP_DEBUG=garbage`` turned it on)."""
    value = os.environ.get("SATCLIP_DEBUG", "")
    if value.strip().lower() in _DEBUG_ON:
        return True
    if value.strip() and value.strip().lower() not in _DEBUG_OFF:
        print(f"satclip: warning: SATCLIP_DEBUG={value!r} is neither on ({', '.join(_DEBUG_ON)}) nor off "
              f"({', '.join(_DEBUG_OFF)}, empty), any case: debug stays off", file=sys.stderr)  # fmt: skip
    return False


def main(argv: list[str] | None = None) -> int:
    """Run ``satclip ARGV`` and return its exit status (never raises).

    Every exception a command raises ends here as one ``satclip: error: …`` line on stderr and the exit
    status of :func:`satclip.cli.boundary.describe`; ``--debug`` or ``SATCLIP_DEBUG=1`` prints its traceback
    instead of the line, with the same exit status.
    """
    _replace_unencodable_output()
    try:
        os.getcwd()
    except FileNotFoundError:  # (importing torch died inside oneMKL, with status 2 and no word of satclip's)
        print("satclip: error: the current directory no longer exists: cd to one that does", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        parser = build_parser()  # (imports the commands: a Ctrl-C this early is an interruption too)
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command they were given to, as its other errors are
            command = _innermost(parser, args)
            explain = getattr(command, "explain_unrecognized", None)
            command.error((explain and explain(extra)) or f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as stop:  # --help, --version, or argparse's one error line (status 2)
        return stop.code if isinstance(stop.code, int) else 0
    except KeyboardInterrupt:
        print("satclip: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    args.argv = list(sys.argv[1:] if argv is None else argv)  # (reports name the command that wrote them)
    debug = _debug_from_environment() or args.debug
    safe_output.forget_created()
    with cli_logging(args.verbose), _sigterm_interrupts(), _named_stdout(), interrupts.enabled():
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # (here, where a failure is named: it was at exit, a traceback)
            for folder in safe_output.created_folders():  # (a typo in an output path made folders without a word)
                logging.getLogger(__name__).info("created %s, which did not exist", folder)
            if interrupts.held() is not None:  # (a Ctrl-C as its output was published: 130 made scripts rerun it)
                print(f"satclip: the interrupt came after {interrupts.held()} was complete: nothing to rerun",
                      file=sys.stderr)  # fmt: skip
        except KeyboardInterrupt:
            safe_output.remove_created_if_empty()
            if debug:
                traceback.print_exc()
            kept = ", ".join(str(path) for path in safe_output.kept_work())
            if kept:  # (a command whose rerun continues its work, and did some)
                print(f"satclip: the work done is kept in {kept}: rerun the same command to continue where it stopped",
                      file=sys.stderr)  # fmt: skip
            print("satclip: interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader of its output went away (`… | head -1`): quietly, as a shell's
            _quiet_stdout()  # commands end on SIGPIPE (it was an "unexpected error … please report it")
            code = EXIT_BROKEN_PIPE
        except Exception as err:
            safe_output.remove_created_if_empty()  # the directories made for outputs that never came
            code, message = describe(err)
            kept = ", ".join(str(path) for path in safe_output.kept_work())
            if kept:  # (a run that failed at its last step left its finished work unnamed: 279 MB of it)
                message += f" (the work done so far is kept in {kept})"
            if debug:  # the traceback instead of the line, the exit status the same (a bad input's 2 was 1)
                traceback.print_exc()
            else:
                print(f"satclip: error: {message.translate(_CONTROL_CHARACTERS)}", file=sys.stderr)
        if argv is None:  # the satclip program, its work done and said: exiting takes a while (torch)
            _ignore_late_signals()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
