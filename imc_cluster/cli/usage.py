"""How the ``imc-cluster`` parsers read a command line: every flag in its published underscore spelling or
hyphenated (``--n-clusters`` is ``--n_clusters``), never abbreviated; an unknown flag answered with the
closest ones of its command; every usage error one line ``imc-cluster: ...`` that points at the command's
help, with exit status 2. Also the flag types argparse lacks: a duration (``--max_time``), a folder, and one
number of clusters or candidate ones (``--n_clusters 5 10 20``, ``5:20``, ``5:20:5``)."""

from __future__ import annotations

import argparse
import difflib
import itertools
import math
import os
import re
import sys
from collections.abc import Sequence

__all__ = [
    "SPELLING_NOTE",
    "CommandParser",
    "HelpFormatter",
    "duration",
    "folder",
    "freeze_choice",
    "cluster_counts",
    "ClusterCounts",
]

#: what every command's help says of the spellings of its flags
SPELLING_NOTE = (
    "Every flag may also be written with hyphens for underscores (--cache-dir for --cache_dir); flags are "
    "never abbreviated."
)
#: seconds of each unit of a duration
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"


class CommandParser(argparse.ArgumentParser):
    """An argument parser that takes hyphenated flags, refuses abbreviations and unknown flags (naming the
    closest known ones), and reports every usage error in one line; its description ends with
    :data:`SPELLING_NOTE`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs["description"] = "\n\n".join(filter(None, [kwargs.get("description"), SPELLING_NOTE]))
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        """Parse ``args`` (hyphenated flags read as their underscore spelling); an unknown flag, or any
        argument left over, is a usage error of this command (before a missing one is)."""
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)  # after "--" nothing is a flag
        spelled = [*map(self._spelling, args[:end]), *args[end:]]
        unknown = [arg for arg in self._own_flags(spelled[:end]) if arg not in self._option_string_actions]
        if unknown:
            self._refuse(unknown)
        namespace, extras = super().parse_known_args(spelled, namespace)
        if extras:
            self._refuse(extras)
        return namespace, extras

    def _own_flags(self, args: list[str]) -> list[str]:
        """The long flags of ``args`` (``=value`` left out) that are this parser's to know: all of them,
        or those before the subcommand for a parser of subcommands."""
        if self._subparsers is not None:
            first = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
            args = args[:first]
        return [arg.partition("=")[0] for arg in args if arg.startswith("--") and arg != "--"]

    def _refuse(self, arguments: list[str]) -> None:
        self.error(f"unrecognized arguments: {' '.join(arguments)}{self._suggestions(arguments)}")

    def _spelling(self, arg: str) -> str:
        """``arg`` with a hyphenated flag of this parser in its underscore spelling (``=value`` kept)."""
        flag, equals, value = arg.partition("=")
        if not flag.startswith("--") or "-" not in flag[2:]:
            return arg
        underscored = "--" + flag[2:].replace("-", "_")
        return underscored + equals + value if underscored in self._option_string_actions else arg

    def _suggestions(self, arguments: list[str]) -> str:
        """ "; did you mean --x?" for the unknown flags among ``arguments`` that resemble flags of this
        parser, in either spelling (each guess followed by its flag when there are several)."""
        known = [flag for flag in self._option_string_actions if flag.startswith("--")]
        known += [flag.replace("_", "-") for flag in known]
        flags = [argument.partition("=")[0] for argument in arguments if argument.startswith("--")]
        guesses = {flag: guess for flag in flags for guess in _closest(flag, known)}
        if len(guesses) < 2:
            return "".join(f"; did you mean {guess}?" for guess in guesses.values())
        return f"; did you mean {', '.join(f'{guess} for {flag}' for flag, guess in guesses.items())}?"

    def error(self, message: str):
        """Exit with status 2 after one line ``imc-cluster: [command: ]message (see '... --help')``."""
        command = self.prog.removeprefix("imc-cluster").strip()
        where = f"{command}: " if command else ""
        line = " ".join(message.split())
        self.exit(2, f"imc-cluster: {where}{line} (see '{self.prog} --help')\n")


def _closest(flag: str, known: list[str]) -> list[str]:
    """The flag of ``known`` that ``flag`` abbreviates (the shortest), else the most similar one; or none."""
    completions = sorted((k for k in known if k.startswith(flag)), key=len)
    return completions[:1] or difflib.get_close_matches(flag, known, n=1)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that fills the paragraphs of descriptions and epilogs but keeps their indented lines (examples,
    one line per preset) as written, and shows the default of a flag that has one (not "default: None" or
    "default: False")."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        parts = []
        for kept, lines in itertools.groupby(text.splitlines(), key=lambda line: line[:1] in ("", " ")):
            if kept:
                parts += [indent + line if line else "" for line in lines]
            else:
                parts.append(super()._fill_text(" ".join(lines), width, indent))
        return "\n".join(parts)

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def freeze_choice(text: str) -> bool | str:
    """``--freeze_encoder``: "auto", or a yes/no spelling read as a bool."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"--freeze_encoder takes auto, true or false, got {text!r}")


def duration(text: str) -> float:
    """Seconds of a duration flag: a bare number of seconds (``5400``), or numbers with units ``s``, ``m``
    or ``h`` (``90s``, ``15m``, ``2h``, ``1h30m``).

    Raises
    ------
    argparse.ArgumentTypeError
        For any other spelling, or no time at all.
    """
    spelled = text.strip().lower()
    if re.fullmatch(_NUMBER, spelled):
        seconds = float(spelled)
    elif re.fullmatch(rf"(?:{_NUMBER}[smh])+", spelled):
        seconds = sum(
            float(number) * _UNITS[unit] for number, unit in re.findall(rf"({_NUMBER})([smh])", spelled)
        )
    else:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give seconds (5400) or numbers with s, m or h (90s, 15m, 2h, 1h30m)"
        )
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is no time: give a positive duration (90s, 15m, 2h)")
    return seconds


def folder(text: str) -> str:
    """A folder flag's value, refused when it names an existing file.

    Raises
    ------
    argparse.ArgumentTypeError
        When ``text`` is the path of a file.
    """
    if os.path.isfile(os.path.expanduser(text)):
        raise argparse.ArgumentTypeError(
            f"{text} is a file, but a folder is needed here (the folder, not a file in it)"
        )
    return text


def cluster_counts(text: str) -> list[int]:
    """The numbers of clusters of one ``--n_clusters`` value: ``K``, or an inclusive range ``FIRST:LAST`` or
    ``FIRST:LAST:STEP`` of at least two.

    Raises
    ------
    argparse.ArgumentTypeError
        For any other spelling, or a range of fewer than two Ks.
    """
    parts = text.strip().split(":")
    if len(parts) > 3 or not all(re.fullmatch(r"[+-]?\d+", part.strip()) for part in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of clusters: give K (10), Ks (5 10 20), or a range FIRST:LAST "
            "(5:20) or FIRST:LAST:STEP (5:20:5)"
        )
    numbers = [int(part) for part in parts]
    if len(numbers) == 1:
        return numbers
    first, last, step = (*numbers, 1) if len(numbers) == 2 else numbers
    if step < 1 or last - first < step:
        raise argparse.ArgumentTypeError(
            f"the range {text!r} holds fewer than two Ks: give FIRST:LAST with FIRST < LAST and a positive "
            "STEP no larger than LAST - FIRST"
        )
    return list(range(first, last + 1, step))


class ClusterCounts(argparse.Action):
    """``--n_clusters``'s values (each :func:`cluster_counts`) as one K (an int), or as the sorted tuple of
    candidate Ks that several values or a range give; a K given twice is a usage error."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        counts = [k for value in values for k in value]
        if len(values) == 1 and len(counts) == 1:
            setattr(namespace, self.dest, counts[0])
            return
        repeated = sorted({k for k in counts if counts.count(k) > 1})
        if repeated:
            raise argparse.ArgumentError(self, f"gives the K(s) {repeated} more than once")
        setattr(namespace, self.dest, tuple(sorted(counts)))
