"""The README's test command is the one CI runs, and its quick-start commands are real commands."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if "python3 -m venv" in l]
    assert len(ci_lines) == 1
    assert ci_lines[0] in (ROOT / "README.md").read_text()


def test_readme_demo_command_sets_up_and_runs_the_demo():
    readme = (ROOT / "README.md").read_text()
    demo = [l for l in readme.splitlines() if l.startswith("python3 -m venv") and "ticketlab demo" in l]
    assert len(demo) == 1
