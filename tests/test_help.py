"""The command line explains itself: every option has help, the top level points to `run --help`,
`list` describes every name in a line, and `--version` gives the project's version."""
import argparse
import re
from pathlib import Path

import pytest

import run_bench

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_of_every_subcommand_has_help():
    parser = run_bench.build_parser()
    missing = []
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_top_level_help_points_to_run_help(capsys):
    with pytest.raises(SystemExit) as e:
        run_bench.main(["--help"])
    assert e.value.code == 0
    assert "run_bench.py run --help" in capsys.readouterr().out


def test_list_gives_every_name_a_line_of_description(capsys):
    from models import MODELS
    from decoding.registry import METHODS
    from tasks import TASKS
    assert run_bench.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    described = {m.group(1): m.group(2) for m in (re.match(r"^  (\S+) - (.+)$", l) for l in lines) if m}
    for name in [*MODELS, "oracle", *TASKS, *METHODS]:
        assert len(described.get(name, "")) > 20, name


def test_version_is_the_project_s(capsys):
    want = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    with pytest.raises(SystemExit) as e:
        run_bench.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"dllm-bench {want}"
