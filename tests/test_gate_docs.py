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
