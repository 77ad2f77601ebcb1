"""The loop: what drives one turn of snapshot -> train -> gate -> promote.

For now it holds the code fingerprint that CI (``lakeloop ci``) and training both record.
"""

from __future__ import annotations

from lakeloop.loop.fingerprint import CodeFingerprint, code_fingerprint

__all__ = ["CodeFingerprint", "code_fingerprint"]
