"""The Python planning example of docs/planning.md runs as written."""

import re
from pathlib import Path

import pytest

pytest.importorskip("gym_pusht")

ROOT = Path(__file__).resolve().parents[2]


def test_the_python_planning_example_runs(monkeypatch, capsys) -> None:
    text = (ROOT / "docs" / "planning.md").read_text()
    section = text[text.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)  # the example names checkpoints/pusht relative to the repository
    exec(compile(code, "docs/planning.md", "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.startswith("6 actions executed")
