"""The README stays true and short: its test command is CI's, its links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_readme_is_a_door():
    """At most 200 lines; the rest is in the documentation (docs/)."""
    assert len(README.splitlines()) <= 200


def test_readme_links_lead_to_files():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert len(local) > 10
    for link in local:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
