"""The feedback joiner on the embedded stream: examples landed where the dataset
snapshots them, idempotent under redelivery (a real process killed before it acks),
last label wins, late labels, unknown ids kept and counted, live accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from _loopproject import GIT_ENV, digit_images, lakeloop, make_project
from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.errors import InvalidInput
from lakeloop.loop import Joiner, live_accuracy
from lakeloop.loop._joinstate import JoinState, state_path
from lakeloop.loop.joiner import land_form, predicted_label
from lakeloop.stream import open_stream

HERE = Path(__file__).parent


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "repo", slice(0, 50), loop_join_window=1000, stream_ack_timeout=1.0
    )


def scores(label: int) -> list[float]:
    out = [0.01] * 10
    out[label] = 0.91
    return out


def publish_traffic(
    repo: Path,
    rows: range,
    *,
    wrong: set[int] = frozenset(),
    when: float | None = None,
    url: str | None = None,
) -> dict[int, str]:
    """Predictions for digit images *rows* (the model's answer is the true digit, except
    for *wrong* rows), as the server logs them; -> row -> prediction id."""
    images, labels = digit_images()
    ids = {i: uuid.uuid4().hex for i in rows}
    now = time.time() if when is None else when
    events = [
        {
            "prediction_id": ids[i],
            "time": now,
            "model": "digits",
            "version": 1,
            "input": images[i][..., None].tolist(),
            "output": scores((int(labels[i]) + (1 if i in wrong else 0)) % 10),
            "shadow": False,
        }
        for i in rows
    ]
    with (
        Lake.open(repo / "lake", background=False) as lake,
        open_stream(lake, "predictions", url=url) as s,
    ):
        s.publish_many(events, ids=[ids[i] for i in rows])
    return ids


def publish_feedback(repo: Path, items: list[dict[str, Any]], url: str | None = None) -> None:
    with (
        Lake.open(repo / "lake", background=False) as lake,
        open_stream(lake, "feedback", url=url) as s,
    ):
        s.publish_many(items, ids=[uuid.uuid4().hex for _ in items])


def labels_for(ids: dict[int, str], *, when: float | None = None) -> list[dict[str, Any]]:
    _, labels = digit_images()
    now = time.time() if when is None else when
    return [{"prediction_id": pid, "label": int(labels[i]), "time": now} for i, pid in ids.items()]


def landed(repo: Path) -> dict[str, str]:
    """key -> MD5 of every example the joiner landed."""
    with Lake.open(repo / "lake", background=False) as lake:
        ns = lake.namespace("digits-png")
        return {i.key: i.etag for i in ns.list() if "/fb-" in i.key}


def counters(repo: Path) -> dict[str, int]:
    with JoinState(state_path(repo / "lake", "digits")) as state:
        return state.counters()


def test_joined_examples_land_where_the_dataset_snapshots_them(repo: Path) -> None:
    ids = publish_traffic(repo, range(100, 140), wrong={100, 101, 102, 103})
    publish_feedback(repo, labels_for(ids))
    with Joiner(repo) as joiner:
        done = joiner.drain()
    assert done["predictions"] == 40 and done["joined"] == 40 and done["unmatched"] == 0
    _, labels = digit_images()
    keys = landed(repo)
    assert set(keys) == {f"{labels[i]}/fb-{pid}.png" for i, pid in ids.items()}
    with Lake.open(repo / "lake", background=False) as lake:
        ns = lake.namespace("digits-png")
        info = ns.stat(f"{labels[100]}/fb-{ids[100]}.png")
        assert info.content_type == "image/png"
        assert info.metadata["prediction_id"] == ids[100] and info.metadata["source"] == "feedback"
        # the PNG holds exactly the pixels that were predicted on
        images, _ = digit_images()
        import io

        import numpy as np
        from PIL import Image

        got = np.asarray(Image.open(io.BytesIO(ns.get(info.key))))
        assert (got == images[100]).all()
        snap = Catalog(lake).snapshot("digits-png/", dataset="digits")
        assert snap.count == 50 + 40
        entries = {e.key: e.label for e in snap.entries()}
        assert all(entries[k] == k.split("/")[0] for k in keys)
        acc = live_accuracy(lake, "digits")
        assert acc[(1, False)].n == 40 and acc[(1, False)].correct == 36
        lower, upper = acc[(1, False)].lower, acc[(1, False)].upper
        assert lower is not None and upper is not None and lower < 0.9 < upper
    c = counters(repo)
    assert c["joined"] == 40 and c["pending"] == 0 and c["predictions"] == 40
    # a second drain finds nothing new and changes nothing
    with Joiner(repo) as joiner:
        assert joiner.drain()["joined"] == 0
    assert landed(repo) == keys and counters(repo) == c


def test_last_label_by_feedback_time_wins(repo: Path) -> None:
    ids = publish_traffic(repo, range(200, 203))
    pid = ids[200]
    t = time.time()
    publish_feedback(repo, [{"prediction_id": pid, "label": "3", "time": t}])
    with Joiner(repo) as joiner:
        joiner.drain()
    assert f"3/fb-{pid}.png" in landed(repo)
    # a newer label moves the example; an older one arriving after it changes nothing
    publish_feedback(
        repo,
        [
            {"prediction_id": pid, "label": "5", "time": t + 2},
            {"prediction_id": pid, "label": "4", "time": t + 1},
        ],
    )
    with Joiner(repo) as joiner:
        joiner.drain()
    publish_feedback(repo, [{"prediction_id": pid, "label": "8", "time": t - 5}])
    with Joiner(repo) as joiner:
        done = joiner.drain()
    assert done["stale"] == 1
    keys = [k for k in landed(repo) if pid in k]
    assert keys == [f"5/fb-{pid}.png"]
    c = counters(repo)
    assert c["joined"] == 1 and c["relabelled"] == 1 and c["stale"] == 1
    assert c["pending"] == 2  # the two other predictions still wait for their label


def test_unknown_malformed_and_late_feedback_is_kept_and_counted(repo: Path) -> None:
    now = time.time()
    old = publish_traffic(repo, range(300, 302), when=now - 2000)  # past the 1000 s window
    fresh = publish_traffic(repo, range(302, 305), when=now - 10)
    unknown = uuid.uuid4().hex
    # feedback stamped now moves the expiry clock to now: the old ones expire
    publish_feedback(repo, [{"prediction_id": unknown, "label": 1, "time": now}])
    with Joiner(repo) as joiner:
        done = joiner.drain()
    assert done["predictions"] == 5 and done["unmatched"] == 1, done
    assert counters(repo)["expired"] == 2
    publish_feedback(
        repo,
        [
            {"prediction_id": fresh[302], "time": now},  # no label
            {"prediction_id": fresh[303], "label": "a/b", "time": now},  # not a key segment
            {"prediction_id": fresh[304], "label": 7, "time": now + 1500},  # too late
            {"prediction_id": old[300], "label": 7, "time": now},  # its prediction expired
        ],
    )
    with Joiner(repo) as joiner:
        done = joiner.drain()
    assert done["joined"] == 0 and done["unmatched"] == 4
    c = counters(repo)
    assert c["unmatched"] == 5 and c["expired"] == 2 and c["joined"] == 0
    with Lake.open(repo / "lake", background=False) as lake:
        loop_ns = lake.internal_namespace("_loop")
        kept = [json.loads(loop_ns.get(i.key)) for i in loop_ns.list(prefix="unmatched/digits/")]
    reasons = sorted(k["reason"] for k in kept)
    assert reasons == sorted(
        [
            "unknown prediction id",
            "malformed feedback (needs prediction_id and label)",
            "the label is not a non-empty string or integer usable as a key segment",
            "the label came after loop_join_window",
            "the prediction expired (past loop_join_window)",
        ]
    )
    assert {k["event"]["prediction_id"] for k in kept} >= {unknown, old[300]}
    assert landed(repo) == {}


def test_feedback_before_its_prediction_joins_when_the_prediction_comes(repo: Path) -> None:
    images, labels = digit_images()
    pid = uuid.uuid4().hex
    publish_feedback(repo, [{"prediction_id": pid, "label": int(labels[400]), "time": time.time()}])
    with Joiner(repo) as joiner:
        assert joiner.drain()["unmatched"] == 1
    with Lake.open(repo / "lake", background=False) as lake, open_stream(lake, "predictions") as s:
        s.publish(
            {"prediction_id": pid, "time": time.time() - 1, "model": "digits", "version": 1,
             "input": images[400].tolist(), "output": int(labels[400]), "shadow": False},
            id=pid,
        )  # fmt: skip
    with Joiner(repo) as joiner:
        assert joiner.drain()["joined"] == 1
    assert list(landed(repo)) == [f"{labels[400]}/fb-{pid}.png"]
    c = counters(repo)
    assert c["joined"] == 1 and c["unmatched"] == 0


@pytest.mark.parametrize("point", ["before-ack", "before-commit"])
def test_a_joiner_killed_mid_batch_redelivers_to_the_same_result(
    repo: Path, tmp_path: Path, point: str
) -> None:
    ids = publish_traffic(repo, range(500, 560), wrong={500, 501})
    feedback = labels_for(ids)
    publish_feedback(repo, feedback)
    # the same events joined without a crash, in a second project: the expected result
    control = make_project(tmp_path / "control", slice(0, 50), stream_ack_timeout=1.0)
    with Lake.open(repo / "lake", background=False) as lake, open_stream(lake, "predictions") as s:
        events = [(m.id, m.data) for m in s.replay()]
    with Lake.open(control / "lake", background=False) as lake:
        with open_stream(lake, "predictions") as s:
            s.publish_many([e for _, e in events], ids=[i for i, _ in events])
        with open_stream(lake, "feedback") as s:
            s.publish_many(feedback, ids=[uuid.uuid4().hex for _ in feedback])
    with Joiner(control) as joiner:
        joiner.drain()
    # a real process, killed (SIGKILL) before it acknowledged the feedback
    child = subprocess.run(
        [sys.executable, str(HERE / "_joiner_child.py"), str(repo), point],
        env={**GIT_ENV, "PYTHONPATH": str(HERE.parent / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    assert len(landed(repo)) == 60  # the lake write was durable before the kill
    time.sleep(1.2)  # stream_ack_timeout: the unacknowledged feedback is due again
    with Joiner(repo) as joiner:
        again = joiner.drain()
    assert again["feedback"] == 60  # redelivered
    assert landed(repo) == landed(control)  # same keys, same bytes, no duplicates
    expected = counters(control)
    assert counters(repo) == expected and expected["joined"] == 60
    with Lake.open(repo / "lake", background=False) as lake:
        assert live_accuracy(lake, "digits")[(1, False)].correct == 58


def test_land_form_and_predicted_label() -> None:
    data, suffix, ctype = land_form([[0, 255], [17, 3]])
    assert suffix == ".png" and ctype == "image/png" and data.startswith(b"\x89PNG")
    assert land_form([[0.5, 1.0]])[1] == ".json"  # not 0..255 integers: kept as JSON
    assert land_form({"text": "hello"}) == (b'{"text":"hello"}', ".json", "application/json")
    assert land_form([[1, 2], [3]])[1] == ".json"  # ragged
    assert predicted_label([0.1, 0.7, 0.2], ["a", "b", "c"]) == "b"
    assert predicted_label([[0.1, 0.7, 0.2]], None) == "1"
    assert predicted_label(2, ["a", "b", "c"]) == "c" and predicted_label("cat", None) == "cat"
    assert predicted_label({"label": "dog"}, None) == "dog" and predicted_label(None, None) is None


def test_a_dataset_labelled_by_a_table_is_refused_clearly(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "r", slice(0, 10))
    (repo / "lakeloop.toml").write_text(
        (repo / "lakeloop.toml").read_text().replace('dataset = "digits"', 'dataset = "tabled"')
    )
    with Lake.open(repo / "lake", background=False) as lake:
        ns = lake.namespace("digits-png")
        ns.put("labels.json", json.dumps({i.key: "x" for i in ns.list()}).encode())
        Catalog(lake).snapshot(
            "digits-png/", dataset="tabled", labels_table="digits-png/labels.json"
        )
    with pytest.raises(InvalidInput, match="key pattern"), Joiner(repo):
        pass


@pytest.mark.parametrize("backend", ["redis", "nats"])
def test_the_joiner_on_a_real_stream_server(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{backend}_server")
    # a prefix of its own: the server is shared by the session's tests
    repo = make_project(tmp_path / "repo", slice(0, 20), stream_prefix=f"j{uuid.uuid4().hex[:8]}")
    ids = publish_traffic(repo, range(600, 630), wrong={600}, url=url)
    unknown = uuid.uuid4().hex
    publish_feedback(
        repo, [*labels_for(ids), {"prediction_id": unknown, "label": 1, "time": time.time()}], url
    )
    with Joiner(repo, url=url) as joiner:
        done = joiner.drain()
    assert done["joined"] == 30 and done["unmatched"] == 1
    _, labels = digit_images()
    assert set(landed(repo)) == {f"{labels[i]}/fb-{pid}.png" for i, pid in ids.items()}
    with Joiner(repo, url=url) as joiner:  # acknowledged: nothing comes back
        assert joiner.drain() == dict.fromkeys(done, 0)
    with Lake.open(repo / "lake", background=False) as lake:
        assert live_accuracy(lake, "digits")[(1, False)].correct == 29


def test_an_input_logged_by_reference_is_read_back(repo: Path) -> None:
    """The server stores big instances in _inference and logs {"ref": ...}."""
    images, labels = digit_images()
    pid = uuid.uuid4().hex
    key = f"digits/2026-11-28/{pid}.json"
    with Lake.open(repo / "lake", background=False) as lake:
        lake.internal_namespace("_inference").put(
            key, json.dumps(images[700].tolist()).encode(), content_type="application/json"
        )
        with open_stream(lake, "predictions") as s:
            s.publish(
                {"prediction_id": pid, "time": time.time(), "model": "digits", "version": 1,
                 "input": {"ref": f"_inference/{key}"}, "output": scores(int(labels[700])),
                 "shadow": False},
                id=pid,
            )  # fmt: skip
    publish_feedback(repo, [{"prediction_id": pid, "label": int(labels[700]), "time": time.time()}])
    with Joiner(repo) as joiner:
        assert joiner.drain()["joined"] == 1
    assert list(landed(repo)) == [f"{labels[700]}/fb-{pid}.png"]


def test_loop_join_and_status_on_the_command_line(repo: Path) -> None:
    ids = publish_traffic(repo, range(800, 810))
    publish_feedback(repo, labels_for(ids))
    joined = lakeloop(repo, "loop", "join")
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["joined"] == 10
    shown = lakeloop(repo, "loop", "status", "--json")
    doc = json.loads(shown.stdout)
    assert doc["joiner"]["joined"] == 10 and doc["turns"] == [] and doc["champion"] is None
    assert [(a["version"], a["n"]) for a in doc["live_accuracy"]] == [(1, 10)]
    # a project whose lake is a server URL cannot train or join: one clear line, exit 2
    (repo / "lakeloop.toml").write_text(
        (repo / "lakeloop.toml").read_text().replace('lake = "lake"', 'lake = "http://x:9000"')
    )
    bad = lakeloop(repo, "loop", "run", "--once")
    assert bad.returncode == 2 and "needs a lake folder" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------- two joiners of one model
def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process *pid* waits for an flock (the kernel lists it in /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" in parts and parts[parts.index("->") + 4] == str(pid):
            return True
    return False


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_joiner_processes_land_each_prediction_once(tmp_path: Path) -> None:
    """Joiner A has landed its batch and not committed yet; joiner B (same group, a real
    `lakeloop loop join`) gets the other labels of the same predictions meanwhile."""
    repo = make_project(
        tmp_path / "repo", slice(0, 20), loop_join_batch=2, stream_ack_timeout=300.0
    )
    ids = publish_traffic(repo, range(900, 902))
    with Joiner(repo) as joiner:  # the predictions are read; no feedback yet
        assert joiner.drain()["predictions"] == 2
    p1, p2 = ids[900], ids[901]
    t = time.time()
    publish_feedback(
        repo,
        [
            {"prediction_id": p1, "label": "3", "time": t},  # A's batch
            {"prediction_id": p2, "label": "6", "time": t + 2},
            {"prediction_id": p1, "label": "5", "time": t + 2},  # B's batch
            {"prediction_id": p2, "label": "4", "time": t},
        ],
    )
    env = {**GIT_ENV, "PYTHONPATH": str(HERE.parent / "src")}
    sync = tmp_path / "sync"
    sync.mkdir()
    a = subprocess.Popen(
        [sys.executable, str(HERE / "_joiner_pause_child.py"), str(repo), str(sync)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    b = None
    try:
        _wait(lambda: (sync / "paused").exists() or a.poll() is not None, "joiner A to pause")
        assert a.poll() is None, a.communicate()
        b = subprocess.Popen(
            [sys.executable, "-m", "lakeloop", "loop", "join"],
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        pid = b.pid
        _wait(lambda: b.poll() is not None or _blocked_on_a_lock(pid), "joiner B to block")
        (sync / "go").write_text("")
        _, a_err = a.communicate(timeout=120)
        _, b_err = b.communicate(timeout=120)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert a.returncode == 0, a_err
    assert b.returncode == 0, b_err
    # one example per prediction, under the label with the latest feedback time
    assert sorted(k for k in landed(repo)) == sorted([f"5/fb-{p1}.png", f"6/fb-{p2}.png"])
    with JoinState(state_path(repo / "lake", "digits")) as state:
        assert state.label(p1)["label"] == "5" and state.label(p2)["label"] == "6"  # type: ignore[index]
    c = counters(repo)
    assert c["joined"] == 2 and c["relabelled"] == 1 and c["stale"] == 1


# ------------------------------------------------------------------ expiry by event time
def test_after_a_backlog_predictions_expire_by_event_time_not_the_wall_clock(
    tmp_path: Path,
) -> None:
    """The joiner was down for longer than the window: the streams hold a day-old hour
    of traffic. Labels within the window join; expiry follows the stream's time."""
    repo = make_project(tmp_path / "repo", slice(0, 20), loop_join_window=1000, loop_join_batch=4)
    then = time.time() - 86400
    ids = publish_traffic(repo, range(910, 914), when=then)
    unlabelled = publish_traffic(repo, range(914, 916), when=then)
    _, labels = digit_images()
    # feedback for ids the joiner never saw comes first, so the labels of the four
    # predictions are read a round after the predictions themselves
    noise = [{"prediction_id": uuid.uuid4().hex, "label": 1, "time": then + 5} for _ in range(4)]
    publish_feedback(repo, [*noise, *labels_for(ids, when=then + 30)])
    with Joiner(repo) as joiner:
        done = joiner.drain()
    assert done["joined"] == 4 and done["unmatched"] == 4, done
    assert set(landed(repo)) == {f"{labels[i]}/fb-{pid}.png" for i, pid in ids.items()}
    c = counters(repo)
    # the clock is the newest feedback read, not now: reading the stream to its end
    # (an empty read) does not expire the two unlabelled, whose label may still come
    assert c["expired"] == 0 and c["pending"] == 2
    with JoinState(state_path(repo / "lake", "digits")) as state:
        assert state.clock() == pytest.approx(then + 30)
    # a label stamped now moves the clock: one day late, it is refused, and both expire
    late = [{"prediction_id": unlabelled[914], "label": 1, "time": time.time()}]
    publish_feedback(repo, late)
    with Joiner(repo) as joiner:
        assert joiner.drain()["unmatched"] == 1
    c = counters(repo)
    assert c["expired"] == 2 and c["pending"] == 0
    with JoinState(state_path(repo / "lake", "digits")) as state:
        assert state.unmatched(1)[0]["reason"] == "the label came after loop_join_window"
        clock = state.clock()
    assert clock is not None and time.time() - 60 < clock <= time.time()


def test_an_empty_feedback_read_does_not_expire_a_backlog(tmp_path: Path) -> None:
    """A round that finds the feedback stream empty (another joiner holds the backlog,
    a short fetch came back empty, an unacknowledged batch is not redelivered yet) must
    not move the clock to now: the day-old predictions still join their labels."""
    repo = make_project(tmp_path / "repo", slice(0, 20), loop_join_window=1000)
    then = time.time() - 86400
    ids = publish_traffic(repo, range(930, 934), when=then)
    with Joiner(repo) as joiner:
        done = joiner.drain()  # reads the predictions; the feedback stream is empty
    assert done["predictions"] == 4 and done["feedback"] == 0, done
    c = counters(repo)
    assert c["expired"] == 0 and c["pending"] == 4
    _, labels = digit_images()
    publish_feedback(repo, labels_for(ids, when=then + 30))
    with Joiner(repo) as joiner:
        done = joiner.drain()
    assert done["joined"] == 4 and done["unmatched"] == 0, done
    assert set(landed(repo)) == {f"{labels[i]}/fb-{pid}.png" for i, pid in ids.items()}


def test_after_a_silence_longer_than_the_window_the_clock_falls_back_to_now(
    tmp_path: Path,
) -> None:
    """No feedback read for longer than window + stream_ack_timeout: nothing can still be
    waiting to be delivered, so the unlabelled predictions expire against the wall clock."""
    repo = make_project(
        tmp_path / "repo", slice(0, 20), loop_join_window=0.5, stream_ack_timeout=0.5
    )
    ids = publish_traffic(repo, range(940, 942), when=time.time() - 3600)
    started = time.time()
    deadline = time.monotonic() + 60
    # a new Joiner each round, as `lakeloop loop run` and `loop join --follow` do: the
    # silence is measured per process, not per Joiner
    while counters(repo)["expired"] < 2:
        assert time.monotonic() < deadline, counters(repo)
        with Joiner(repo) as joiner:
            joiner.drain()
        time.sleep(0.1)  # a poll interval, not synchronisation: the loop waits for the state
    with JoinState(state_path(repo / "lake", "digits")) as state:
        clock = state.clock()
    assert clock is not None and started <= clock <= time.time()
    assert counters(repo)["pending"] == 0 and len(ids) == 2


def test_a_feedback_time_from_the_future_does_not_expire_waiting_predictions(
    repo: Path,
) -> None:
    ids = publish_traffic(repo, range(920, 922))
    bogus = [{"prediction_id": uuid.uuid4().hex, "label": 1, "time": time.time() + 1e6}]
    publish_feedback(repo, bogus)
    with Joiner(repo) as joiner:
        joiner.drain()
        clock = joiner.state.clock()
    assert clock is not None and clock <= time.time()
    publish_feedback(repo, labels_for(ids))
    with Joiner(repo) as joiner:
        assert joiner.drain()["joined"] == 2
    assert counters(repo)["expired"] == 0
