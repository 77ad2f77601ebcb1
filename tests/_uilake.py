"""A small lake with one of everything the web UI shows, for the UI's tests.

Namespace ``photos`` (alice's): scikit-learn's digits as PNGs under ``digits/<label>/``,
a CSV, JSON Lines, a text file, a truncated PNG, and a key holding ``<script>``; dataset
``digits`` with two snapshots; two runs of a real scikit-learn model (per-epoch
accuracy and loss), both registered as versions of ``digits-lr``, and two gate decisions
recorded the way ``lakeloop ci`` records them (an acceptance, then a paired comparison).
Namespace ``secret`` (bob's) holds a dataset, a run and a model of its own.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

XSS_KEY = 'xss/<script>alert("key")</script>.txt'
XSS_META = '<img src=x onerror=alert("meta")>'
N_PER_DIGIT = 15  # 150 images: small, still a real grid and a real evaluation split


def _png(pixels: Any) -> bytes:
    from PIL import Image

    img = Image.fromarray(pixels.astype("uint8"), mode="L")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    table = pa.table({"epoch": list(range(1, 31)), "loss": [1.0 / e for e in range(1, 31)]})
    pq.write_table(table, out, row_group_size=10)
    return out.getvalue()


def _train(snap: Any, epochs: int, alpha: float, run: Any) -> tuple[Any, Any, Any]:
    """A real SGD logistic regression, one pass per epoch, accuracy and loss per epoch."""
    import numpy as np
    from PIL import Image
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import log_loss

    def arrays(split: str) -> tuple[Any, Any]:
        xs, ys = [], []
        for e, data in snap.iter_bytes(split):
            xs.append(np.asarray(Image.open(io.BytesIO(data))).reshape(-1) / 16.0)
            ys.append(int(e.label))
        return np.array(xs), np.array(ys)

    x, y = arrays("train")
    xe, ye = arrays("eval")
    clf = SGDClassifier(loss="log_loss", alpha=alpha, random_state=0)
    classes = np.arange(10)
    for epoch in range(1, epochs + 1):
        clf.partial_fit(x, y, classes=classes)
        run.log_epoch(
            epoch,
            {
                "accuracy": float(clf.score(x, y)),
                "val_accuracy": float(clf.score(xe, ye)),
                "loss": float(log_loss(y, clf.predict_proba(x), labels=classes)),
                "val_loss": float(log_loss(ye, clf.predict_proba(xe), labels=classes)),
            },
        )
    return clf, xe, ye


def build_ui_lake(root: Path) -> dict[str, Any]:
    """Create the lake at *root*; returns names the tests look for."""
    import numpy as np
    from sklearn.datasets import load_digits

    from lakeloop.catalog import Catalog
    from lakeloop.gate import Policy, acceptance, compare_all
    from lakeloop.loop.ci import _history
    from lakeloop.registry import Lineage, Registry
    from lakeloop.store import Lake
    from lakeloop.train.runs import Runs

    digits = load_digits()
    lake = Lake.open(root, create=True)
    try:
        photos = lake.create_namespace("photos")
        seen: dict[int, int] = {}
        for img, label in zip(digits.images, digits.target, strict=True):
            n = seen.get(int(label), 0)
            if n >= N_PER_DIGIT:
                continue
            seen[int(label)] = n + 1
            photos.put(
                f"digits/{label}/{n}.png",
                _png(img * 16),
                content_type="image/png",
                metadata={"label": str(label), "tags": "digit,handwritten"},
            )
        photos.put(
            "tables/sales.csv",
            b"region,product,units,price\nnorth,lamp,12,19.5\nsouth,desk,3,120.0\n"
            b"east,chair,7,45.25\nwest,lamp,1,19.5\n",
            content_type="text/csv",
            metadata={"tags": "finance"},
        )
        photos.put(
            "tables/events.jsonl",
            b'{"user": 1, "event": "click", "ms": 12}\n{"user": 2, "event": "buy", "ms": 40}\n',
            content_type="application/x-ndjson",
        )
        photos.put(
            "notes/readme.txt", b"Handwritten digits, 8x8 pixels.\n", content_type="text/plain"
        )
        photos.put(
            "notes/config.json",
            b'{"lr": 0.01, "layers": [16, 32]}',
            content_type="application/json",
        )
        photos.put("blobs/weights.bin", bytes(range(200)), content_type="application/octet-stream")
        photos.put(
            "tables/metrics.parquet", _parquet(), content_type="application/vnd.apache.parquet"
        )
        photos.put(
            "broken/truncated.png", _png(digits.images[0] * 16)[:30], content_type="image/png"
        )
        photos.put(XSS_KEY, b"hello", content_type="text/plain", metadata={"note": XSS_META})

        cat = Catalog(lake)
        snap1 = cat.snapshot(
            "photos/digits/", dataset="digits", labels="{label}/{name}", eval_fraction=0.3
        )
        # a second snapshot: one image more, one changed
        photos.put("digits/0/extra.png", _png(digits.images[10] * 16), content_type="image/png")
        photos.put("digits/1/0.png", _png(digits.images[11] * 16), content_type="image/png")
        snap2 = cat.snapshot("photos/digits/", dataset="digits")

        runs = Runs(lake)
        reg = Registry(lake)
        code = {"fingerprint": "f" * 64, "pipeline": "pipeline.py", "commit": "abc1234"}
        versions = []
        for alpha, epochs in ((0.01, 6), (0.5, 4)):
            run = runs.start(
                params={"alpha": alpha, "epochs": epochs},
                snapshots={"digits": snap2.id},
                code=code,
                labels=[str(i) for i in range(10)],
                model="digits-lr",
            )
            clf, xe, ye = _train(snap2, epochs, alpha, run)
            acc = float(clf.score(xe, ye))
            rec = run.finish({"accuracy": acc}, model=clf)
            v = reg.register(
                "digits-lr",
                clf,
                lineage=Lineage(
                    snapshots={"digits": snap2.id},
                    code=code,
                    params={"alpha": alpha, "epochs": epochs},
                    metrics={"accuracy": acc},
                    run_id=rec.id,
                ),
            )
            versions.append((v, clf, rec))

        (v1, clf1, run1), (v2, clf2, _) = versions
        policy = Policy(metric="accuracy", margin=0.02)
        pred1 = clf1.predict(xe)
        pred2 = clf2.predict(xe)
        snapdoc = {"dataset": "digits", "id": snap2.id, "split": "eval", "n": len(ye)}
        acc1 = acceptance(ye, pred1, threshold=0.6, confidence=0.95)
        first = reg.record_decision(
            "digits-lr",
            {
                "kind": "ci", "outcome": "promote" if acc1.passed else "block",
                "passed": acc1.passed, "model": "digits-lr", "candidate": v1.ref,
                "champion": None, "ratchet": [], "snapshot": snapdoc, "code": code,
                "decision": acc1.to_dict(),
                "values": [h.to_dict() for h in _history(ye, {v1.ref: {"accuracy": pred1}},
                                                         [policy])],
                "reasons": list(acc1.reasons), "promoted": acc1.passed,
            },
        )  # fmt: skip
        if acc1.passed:
            reg.promote(v1.ref, decision=first, reason="first model")
        both = compare_all(ye, pred1, pred2, [policy])
        scored = {v1.ref: {"accuracy": pred1}, v2.ref: {"accuracy": pred2}}
        second = reg.record_decision(
            "digits-lr",
            {
                "kind": "ci", "outcome": both.outcome, "passed": both.passed,
                "model": "digits-lr", "candidate": v2.ref, "champion": v1.ref, "ratchet": [],
                "snapshot": snapdoc, "code": code, "decision": both.to_dict(),
                "values": [h.to_dict() for h in _history(ye, scored, [policy])],
                "reasons": list(both.reasons), "promoted": False,
            },
        )  # fmt: skip

        # bob's namespace, with a dataset, a run and a model of its own
        secret = lake.create_namespace("secret")
        secret.put("plans/secret-plan.csv", b"a,b\n1,2\n", content_type="text/csv")
        secret.put("plans/classified.png", _png(digits.images[5] * 16), content_type="image/png")
        ssnap = cat.snapshot("secret/plans/", dataset="secretset")
        srun = runs.start(params={"k": 1}, snapshots={"secretset": ssnap.id}, model="secret-model")
        srun.log_epoch(1, {"accuracy": 0.5})
        srec = srun.finish({"accuracy": 0.5})
        from _registry_models import Doubler

        reg.register(
            "secret-model",
            Doubler(),
            lineage=Lineage(snapshots={"secretset": ssnap.id}, run_id=srec.id),
        )
        cat.close()
        facts = {
            "snap1": snap1.id,
            "snap2": snap2.id,
            "run1": run1.id,
            "secret_run": srec.id,
            "decisions": [first["id"], second["id"]],
            "outcomes": [first["outcome"], second["outcome"]],
            "eval_n": len(ye),
            "accuracy": [float(np.mean(pred1 == ye)), float(np.mean(pred2 == ye))],
        }
        turn_facts = {"candidate": v2.ref, "champion": v1.ref, "snapshot": snap2.id,
                      "outcome": second["outcome"], "decision": second["id"],
                      "reasons": list(both.reasons)}  # fmt: skip
    finally:
        lake.close()
    facts.update(feed_the_loop(root, digits, turn_facts))
    return facts


FED_LABEL = 7  # served traffic is all sevens, so only digits/7/ gains joined examples
FED = 12  # predictions served; labels come back for all but two


def feed_the_loop(root: Path, digits: Any, turn: dict[str, Any]) -> dict[str, Any]:
    """What serving and the loop record, through their own code: predictions of v1 (and
    of v2 in shadow) and their feedback on the real streams, joined by the real joiner
    into the dataset's folder; then one finished loop turn in the turn log."""
    import time
    import uuid

    from lakeloop.loop import Joiner, TurnLog
    from lakeloop.loop.turns import Turn, new_turn_id
    from lakeloop.store import Lake
    from lakeloop.stream import open_stream

    project = root.parent / "project"
    project.mkdir()
    (project / "pipeline.py").write_text("params = {}\n")
    (project / "lakeloop.toml").write_text(
        f'[project]\nlake = "{root}"\npipeline = "pipeline.py"\ndataset = "digits"\n'
        'model = "digits-lr"\n'
    )
    rows = [i for i, t in enumerate(digits.target) if t == FED_LABEL][-FED:]
    now = time.time()
    ids = [uuid.uuid4().hex for _ in rows]

    def scores(label: int) -> list[float]:
        out = [0.01] * 10
        out[label] = 0.91
        return out

    events = []
    for n, (i, pid) in enumerate(zip(rows, ids, strict=True)):
        pixels = (digits.images[i] * 16).astype("uint8")[..., None].tolist()
        wrong = n < 3  # v1 gets three wrong, v2 (in shadow) one
        events.append({"prediction_id": pid, "time": now, "model": "digits-lr", "version": 1,
                       "input": pixels, "output": scores(1 if wrong else FED_LABEL),
                       "shadow": False})  # fmt: skip
        events.append({"prediction_id": pid, "time": now, "model": "digits-lr",
                       "version": 2, "input": pixels,
                       "output": scores(1 if n < 1 else FED_LABEL), "shadow": True})  # fmt: skip
    feedback = [{"prediction_id": pid, "label": FED_LABEL, "time": now} for pid in ids[:-2]]
    with Lake.open(root, background=False) as lake:
        with open_stream(lake, "predictions") as s:
            s.publish_many(events, ids=[e["prediction_id"] + str(e["shadow"]) for e in events])
        with open_stream(lake, "feedback") as s:
            s.publish_many(feedback, ids=[uuid.uuid4().hex for _ in feedback])
    with Joiner(project) as joiner:
        joined = joiner.drain()
    with Lake.open(root, background=False) as lake:
        started = time.time() - 5
        TurnLog(lake, "digits-lr").finish(
            Turn(
                id=new_turn_id(),
                model="digits-lr",
                trigger="examples",
                started=started,
                reasons=[f"{FED - 2} labelled examples joined since the last turn (>=10)"],
                status="done",
                steps={"snapshot": 0.2, "tests": 0.6, "train": 2.9, "gate": 0.4},
                ended=started + 4.1,
                snapshot=turn["snapshot"],
                examples=151,
                candidate=turn["candidate"],
                champion_before=turn["champion"],
                champion_after=turn["champion"],
                outcome=turn["outcome"],
                decision_id=turn["decision"],
                gate_reasons=turn["reasons"],
                joined=FED - 2,
            )
        )
    return {"joined": joined, "fed": FED}


if __name__ == "__main__":  # build a lake by hand: python tests/_uilake.py PATH
    import sys

    print(json.dumps(build_ui_lake(Path(sys.argv[1])), indent=1))
