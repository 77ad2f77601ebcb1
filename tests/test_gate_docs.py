"""docs/gate.md's example runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path


def test_gate_doc_example_runs() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "gate.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "docs/gate.md", "exec"), {})
    text = out.getvalue()
    assert "lakeloop gate" in text and text.split()[0] in ("promote", "hold", "block")


def test_docstring_examples() -> None:
    import doctest
    import importlib

    # by name: lakeloop.gate.acceptance is also the name of a function in the package
    for name in ("gate", "gate.acceptance", "gate.decision", "gate.policy"):
        module = importlib.import_module(f"lakeloop.{name}")
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, name
        assert result.attempted > 0, name
