"""A small continuous-training project for the loop tests: a git repository with a
scikit-learn pipeline on the 8x8 digits stored as PNG objects (the demo's form), and a
lake beside it holding the first images as dataset ``digits``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lakeloop import Lake

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
GIT_ENV.pop("LAKELOOP_LAKE", None)
NAMESPACE = "digits-png"

PIPELINE = """\
import io
import os
import time

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

params = {"C": [1.0]}


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64).ravel() / 255.0


def build(params):
    return MODEL


def fit(model, data, params):
    # the crash test holds training here until it has killed the controller
    while os.environ.get("LOOP_TEST_HOLD") and not os.path.exists(os.environ["LOOP_TEST_HOLD"]):
        time.sleep(0.05)
    model.fit(*data.train.arrays())


MODEL = LogisticRegression(C=1.0, max_iter=300)
"""
GOOD = "MODEL = LogisticRegression(C=1.0, max_iter=300)"
BAD = "MODEL = DecisionTreeClassifier(max_depth=2, random_state=0)"

PROJECT = """\
[project]
lake = "lake"
pipeline = "pipeline.py"
dataset = "digits"
model = "digits"
code = ["pipeline.py"]

[[gate.policy]]
metric = "accuracy"
margin = 0.03

[gate.acceptance]
threshold = 0.8

[train]
workers = 1
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=GIT_ENV
    )
    return out.stdout.decode().strip()


def digit_images() -> tuple[Any, Any]:
    """(images as uint8 0..255 (n, 8, 8), labels) of scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).round().astype(np.uint8), digits.target


def png(pixels: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def add_digits(lake_dir: Path, rows: slice, settings: dict[str, Any] | None = None) -> None:
    """Put digits as ``<label>/<index>.png`` and snapshot them as dataset ``digits``."""
    from lakeloop.catalog import Catalog

    images, labels = digit_images()
    with Lake.open(lake_dir, create=True, settings=settings, background=False) as lake:
        ns = lake.create_namespace(NAMESPACE, exist_ok=True)
        ns.put_many(
            [
                (f"{labels[i]}/{i:05d}.png", png(images[i]), {"content_type": "image/png"})
                for i in range(len(images))[rows]
            ]
        )
        Catalog(lake).snapshot(f"{NAMESPACE}/", dataset="digits", labels="{label}/{name}")


def make_project(root: Path, rows: slice = slice(0, 500), **settings: Any) -> Path:
    """A git repository at *root* with the project and its lake (first *rows* digits)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "lakeloop.toml").write_text(PROJECT)
    (root / ".gitignore").write_text("lake/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "project")
    add_digits(root / "lake", rows, settings or None)
    return root


def lakeloop(repo: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", *args],
        cwd=repo,
        env={**GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
        **kw,
    )
