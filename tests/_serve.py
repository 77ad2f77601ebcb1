"""A real `lakeloop serve` for the tests: its own process, uvicorn on a free loopback port.

Models are built small in the test (a Keras CNN on 8x8x1 inputs, a scikit-learn
classifier), registered in a fresh lake, and served by ``python -m lakeloop serve``
exactly as a user starts it; the test talks HTTP to it and may ``kill -9`` it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (8, 8, 1)
CLASSES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keras_model(seed: int) -> Any:
    """A small CNN (8x8x1 -> 4 classes) with weights fixed by *seed*; not trained."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    return model


def images(n: int, seed: int = 0) -> Any:
    import numpy as np

    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


class GatedModel:
    """A pyfunc model (4 numbers -> their sum + *offset*) that holds every call while the
    file *gate* exists: a test closes the gate to keep requests waiting in the server for
    as long as it needs (no timing luck), and opens it to let them through."""

    input_spec: ClassVar[dict[str, Any]] = {"shape": [4], "dtype": "float64"}

    def __init__(self, offset: float, gate: Path) -> None:
        self.offset = offset
        self.gate = str(gate)

    def predict(self, batch: Any) -> Any:
        deadline = time.monotonic() + 120  # a test that died never holds a server for long
        while os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.005)
        return batch.sum(axis=1) + self.offset


class Server:
    """``lakeloop serve REF`` over the lake at *lake_path*, with ``--set`` *options*."""

    def __init__(
        self,
        lake_path: Path,
        ref: str,
        *,
        shadow: str | None = None,
        options: dict[str, Any] | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "lakeloop", "--lake", str(lake_path), "serve", ref]
        cmd += ["--port", str(self.port)]
        if shadow:
            cmd += ["--shadow", shadow]
        for key, value in (options or {}).items():
            cmd += ["--set", f"{key}={value}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        self.log_path = log or lake_path.parent / f"serve-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lakeloop serve exited: {self.output()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lakeloop serve did not start: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def predict(self, instances: Any, path: str = "/v1/predict") -> httpx.Response:
        return self.client.post(path, json={"instances": instances})

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.close()

    def close(self) -> None:
        self.client.close()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
