"""`aigc` starts fast (issue 22): commands are imported when used, so `aigc --version`,
`aigc --help` and `aigc provenance read` do not import torch, and every command named in the
table is there with the help the table lists for it."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from aigcguard import __version__
from aigcguard.cli import main
from aigcguard.cli.main import COMMANDS

PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH',"
    " file=sys.stderr))\n"
    "from aigcguard.cli import main\n"
    "sys.argv = ['aigc', *sys.argv[1:]]\n"
    "main()\n"
)


def _probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )


def test_version_imports_no_torch():
    run = _probe("--version")
    assert run.returncode == 0 and __version__ in run.stdout
    assert run.stderr.strip().endswith("NO-TORCH"), run.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["provenance", "--help"], ["provenance", "read", "--help"]]
)
def test_help_imports_no_torch(args):
    run = _probe(*args)
    assert run.returncode == 0 and "Usage:" in run.stdout, run.stderr
    assert run.stderr.strip().endswith("NO-TORCH"), run.stderr


def test_reading_labels_imports_no_torch(tmp_path):
    from PIL import Image

    Image.new("RGB", (16, 16), "white").save(tmp_path / "plain.png")
    run = _probe("provenance", "read", str(tmp_path / "plain.png"))
    assert run.returncode == 0 and '"path"' in run.stdout, run.stderr
    assert run.stderr.strip().endswith("NO-TORCH"), run.stderr


def test_every_command_in_the_table_loads_and_is_listed():
    ctx = click.Context(main)
    for name, (module, attr, sentence) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name, (name, module, attr)
        # the listed sentence is the first one of the command's own help
        own = command.get_short_help_str(1000)
        assert own.startswith(sentence) and own[len(sentence) :][:1] in ("", " "), name
    listed = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in listed for name in COMMANDS), listed
    assert main.get_command(ctx, "no-such-command") is None
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output
