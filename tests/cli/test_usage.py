"""Flags as people type them: every flag of every command also hyphenated, none abbreviated, an unknown
one answered with the closest, and every usage error one line that points at the command's help; the
durations of ``--max_time`` and the folders of ``--path`` and ``--cache_dir``."""

import argparse
import re

import pytest

from imc_cluster.cli.parser import build_parser, parse_args
from imc_cluster.cli.usage import SPELLING_NOTE, cluster_counts, duration, freeze_choice

#: the least each command needs
REQUIRED = {
    "train": ["--dataset", "c10"],
    "test": ["--dataset", "c10", "--cpt_load_path", "m.cpt"],
    "predict": ["--cpt_load_path", "m.cpt", "--path", "."],
    "cache": [],
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _value(action: argparse.Action, folder: str) -> list[str]:
    """Arguments that ``action`` accepts."""
    if action.nargs == 0:
        return []
    if action.choices:
        value = str(next(iter(action.choices)))
    else:
        examples = {int: "3", float: "0.5", duration: "90s", freeze_choice: "true", cluster_counts: "3"}
        value = examples.get(action.type, folder)
    count = action.nargs if isinstance(action.nargs, int) else 1
    return [value] * count


def _every_flag() -> list:
    return [
        pytest.param(command, action, id=f"{command} {action.option_strings[-1]}")
        for command, parser in _subcommands().items()
        for action in parser._actions
        if any("_" in flag for flag in action.option_strings)
    ]


@pytest.mark.parametrize("command, action", _every_flag())
def test_every_flag_also_hyphenated(command, action, tmp_path):
    flag = next(flag for flag in action.option_strings if "_" in flag)
    given = [flag, *_value(action, str(tmp_path))]
    hyphenated = [flag.replace("_", "-"), *given[1:]]
    underscored = vars(parse_args([command, *REQUIRED[command], *given]))
    assert vars(parse_args([command, *REQUIRED[command], *hyphenated])) == underscored
    assert action.dest in underscored["given"]
    if len(given) == 2:  # --flag=value too
        joined = [f"{hyphenated[0]}={given[1]}", *given[2:]]
        assert vars(parse_args([command, *REQUIRED[command], *joined])) == underscored


@pytest.mark.parametrize("command", ["", "train", "test", "predict", "cache"])
def test_help_shows_the_published_spelling_and_notes_the_other_once(command, run, capsys):
    assert run([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert " ".join(text.split()).count(" ".join(SPELLING_NOTE.split())) == 1
    assert set(re.findall(r"--\w+-[\w-]+", text)) == {"--cache-dir"}  # the note's example alone


def usage_error(run, capsys, argv: list[str]) -> str:
    """The one line of stderr of ``imc-cluster argv``, which must be a usage error of its command."""
    assert run(argv) == 2
    err = capsys.readouterr().err
    command = argv[0] if argv and argv[0] in REQUIRED else ""
    prefix = f"imc-cluster: {command}: " if command else "imc-cluster: "
    pointer = f" (see 'imc-cluster {command} --help')\n" if command else " (see 'imc-cluster --help')\n"
    assert err.startswith(prefix) and err.endswith(pointer) and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--dataset", "c10", "--n_cluster", "10"], "--n_cluster; did you mean --n_clusters?"),
        (["train", "--dataset", "c10", "--n-cluster", "10"], "--n-cluster; did you mean --n-clusters?"),
        (["train", "--dataset", "c10", "--epoch=3"], "--epoch; did you mean --epochs?"),
        (["train", "--n_cluster", "3"], "--n_cluster; did you mean --n_clusters?"),  # before --dataset
        (
            ["train", "--dataset", "c10", "--epoch", "3", "--protoypes", "9"],
            "did you mean --epochs for --epoch, --prototypes for --protoypes?",
        ),
        (["test", *REQUIRED["test"], "--cpt_load", "x"], "--cpt_load; did you mean --cpt_load_path?"),
        (["predict", *REQUIRED["predict"], "--batch", "4"], "--batch; did you mean --batch_size?"),
        (["cache", "--clean"], "--clean; did you mean --clear?"),
        (["--verison"], "--verison; did you mean --version?"),
        (["train", "--dataset", "c10", "stray"], "unrecognized arguments: stray ("),
        (["test", *REQUIRED["test"], "--epochs", "3"], "unrecognized arguments: --epochs ("),
    ],
)
def test_unknown_and_abbreviated_flags_are_refused_with_a_guess(argv, expected, run, capsys):
    assert expected in usage_error(run, capsys, argv)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--dataset", "c10", "--batch_size", "many"], "argument --batch_size: invalid int value"),
        (["train", "--dataset", "nope"], "invalid choice: 'nope'"),
        (["train", "--dataset", "c10", "--precision", "half"], "invalid choice: 'half'"),
        (["test", "--dataset", "c10"], "required: --cpt_load_path"),
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "required"),
    ],
)
def test_usage_errors_point_at_the_commands_help(argv, expected, run, capsys):
    assert expected in usage_error(run, capsys, argv)


# ------------------------------------------------------------------ folders


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "folder", "--path", "{file}"],
        ["test", "--dataset", "folder", "--cpt_load_path", "m.cpt", "--path", "{file}"],
        ["predict", "--cpt_load_path", "m.cpt", "--path", "{file}"],
        ["train", "--dataset", "c10", "--cache-dir", "{file}"],
        ["cache", "--cache_dir", "{file}"],
    ],
    ids=["train --path", "test --path", "predict --path", "train --cache-dir", "cache --cache_dir"],
)
def test_a_file_where_a_folder_goes_is_a_usage_error(argv, tmp_path, run, capsys):
    file = tmp_path / "photo.png"
    file.write_bytes(b"not a folder")
    err = usage_error(run, capsys, [arg.format(file=file) for arg in argv])
    assert f"{file} is a file, but a folder is needed" in err


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90.0),
        ("0.5", 0.5),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        (" 2H ", 7200.0),
    ],
)
def test_durations(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize(
    "text, expected",
    [
        ("15x", "is not a duration"),
        ("", "is not a duration"),
        ("h", "is not a duration"),
        ("-5", "is not a duration"),
        ("1e3", "is not a duration"),
        ("15 m", "is not a duration"),
        ("m15", "is not a duration"),
        ("0", "is no time"),
        ("0s", "is no time"),
        ("9" * 400, "is no time"),
    ],
)
def test_bad_durations(text, expected):
    with pytest.raises(argparse.ArgumentTypeError, match=expected):
        duration(text)


@pytest.mark.parametrize("spelled", ["15x", "0", "ten minutes"])
def test_a_bad_max_time_is_a_usage_error(spelled, run, capsys):
    err = usage_error(run, capsys, ["train", "--dataset", "c10", "--max-time", spelled])
    assert f"argument --max_time: '{spelled}' is" in err
