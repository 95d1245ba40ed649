"""The README stays true: its test command is CI's, its defaults table is the code's."""

from __future__ import annotations

import re
from pathlib import Path

from edgesplit.config import defaults_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)?\n(.*?)\n```", section, flags=re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    commands = quick_start()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    run, test = commands
    assert "sweeps/quick.toml" in run and "summarize" in run
    assert (ROOT / "sweeps" / "quick.toml").exists()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_defaults_table_matches_the_code():
    assert defaults_markdown() in README
