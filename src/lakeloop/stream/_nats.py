"""The NATS backend: one JetStream stream per stream, one durable pull consumer per group.

::

    stream   <stream_prefix>_<name>, subject <stream_prefix>.<name>, file storage
    publish  a JetStream publish that waits for the server's ack (publish_many: all sent
             in order on the connection, then every ack awaited)
    event    payload = the event's JSON; headers Lakeloop-Id and Lakeloop-Time
    consume  fetch from the durable consumer <group> (explicit ack, ack_wait =
             stream_ack_timeout: JetStream itself redelivers what was not acked)
    ack      acknowledges each message and waits for the server to confirm it
    replay   an ephemeral consumer from the sequence after the offset, no acks

Offsets are stream sequence numbers. nats-py is asyncio-only: a private event loop runs
in a daemon thread, and each call here submits a coroutine to it and waits. An ack must
come from the handle that consumed the message (JetStream acks go to the message's
reply subject, which only that handle holds); an ack it cannot match is ignored and
the message is redelivered after the timeout, as the at-least-once contract allows.

Threads share a handle: the pull subscription of a group is made once (concurrent first
consumes wait for it, so none is leaked), and the fetches of one group take turns on it
(they would otherwise read each other's replies from the subscription's one inbox). An
ack that fails (no answer from the server) keeps its messages in the handle's
bookkeeping, so acking them again works; only a confirmed ack forgets a message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from lakeloop.errors import InvalidInput, StreamError
from lakeloop.settings import Settings
from lakeloop.stream._base import (
    Message,
    Stream,
    check_consume_args,
    check_group_name,
    check_offsets,
    check_stream_name,
    encode_events,
)

__all__ = ["NatsStream", "list_nats"]

log = logging.getLogger("lakeloop.stream")
_ID = "Lakeloop-Id"
_TIME = "Lakeloop-Time"
_CALL_TIMEOUT = 30.0
_PUBLISH_TIMEOUT = 10.0  # for the server's acks of a publish; then StreamError
_ACK_TIMEOUT = 5.0  # for the server's confirmation of one ack; then StreamError
_REPLAY_BATCH = 500
T = TypeVar("T")


def _parse_offset(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text):
        raise ValueError(text)
    return int(text)


class _Loop:
    """A private asyncio event loop in a daemon thread, with a synchronous ``run``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="lakeloop-nats", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], op: str, target: str, timeout: float) -> T:
        import nats.errors

        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except nats.errors.Error as exc:
            text = str(exc) or type(exc).__name__
            raise StreamError(
                text if text.startswith("nats") else f"nats: {text}", op=op, target=target
            ) from None
        except TimeoutError:
            future.cancel()
            raise StreamError(f"no answer within {timeout:g}s", op=op, target=target) from None
        except OSError as exc:
            raise StreamError(f"nats: {exc}", op=op, target=target) from None

    def stop(self) -> None:
        """Cancel what still runs on the loop (the client's readers, pings), then end it."""

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(5)
        except (TimeoutError, RuntimeError):
            pass  # stop anyway
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _quiet(exc: Exception) -> None:
    """nats-py prints every connection error with a traceback unless given a callback;
    the failure reaches the caller as ``StreamError`` instead."""
    log.debug("nats: %r", exc)


async def _connect(url: str) -> Any:
    import nats

    return await nats.connect(
        servers=[url],
        connect_timeout=5,
        max_reconnect_attempts=3,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        error_cb=_quiet,
    )


def list_nats(url: str, settings: Settings) -> list[str]:
    prefix = f"{settings['stream_prefix']}_"

    async def names() -> list[str]:
        nc = await _connect(url)
        try:
            infos = await nc.jetstream().streams_info()
            return [i.config.name for i in infos]
        finally:
            await nc.close()

    loop = _Loop()
    try:
        found = loop.run(names(), "list streams", url, _CALL_TIMEOUT)
    finally:
        loop.stop()
    return sorted(
        n[len(prefix) :] for n in found if n.startswith(prefix) and "_" not in n[len(prefix) :]
    )


class NatsStream(Stream):
    """A stream as a JetStream stream; groups are durable pull consumers."""

    backend = "nats"

    def __init__(self, url: str, name: str, settings: Settings) -> None:
        super().__init__(check_stream_name(name))
        self.url = url
        prefix = str(settings["stream_prefix"])
        self.stream_name = f"{prefix}_{name}"
        self.subject = f"{prefix}.{name}"
        self._ack_timeout = float(settings["stream_ack_timeout"])
        self._max_bytes = int(settings["stream_max_event_bytes"])
        self._loop = _Loop()
        self._subs: dict[str, Any] = {}
        # group -> lock (used on the event loop only): one subscribe, one fetch at a time
        self._group_locks: dict[str, asyncio.Lock] = {}
        # group -> offset -> (message, when delivered): what this handle may ack
        self._inflight: dict[str, dict[int, tuple[Any, float]]] = {}
        self._mu = threading.Lock()
        self._closed = False
        try:
            self._nc, self._js = self._run(self._open(), "open stream")
        except BaseException:
            self._loop.stop()
            raise

    @property
    def _where(self) -> str:
        return f"{self.url} {self.stream_name}"

    def _run(self, coro: Coroutine[Any, Any, T], op: str, timeout: float = _CALL_TIMEOUT) -> T:
        if self._closed:
            coro.close()
            raise InvalidInput("the stream is closed", op=op, target=self.name)
        return self._loop.run(coro, op, self._where, timeout)

    async def _open(self) -> tuple[Any, Any]:
        import nats.js.errors

        nc = await _connect(self.url)
        js = nc.jetstream()
        try:
            await js.stream_info(self.stream_name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(name=self.stream_name, subjects=[self.subject], storage="file")
        return nc, js

    # ---------------------------------------------------------------- publishing
    def publish_many(
        self, events: Sequence[dict[str, Any]], *, ids: Sequence[str | None] | None = None
    ) -> list[str]:
        encoded = encode_events(self.name, events, ids, self._max_bytes)
        if not encoded:
            return []
        return self._run(self._publish(encoded, repr(time.time())), "publish")

    async def _publish(self, encoded: list[tuple[str, bytes]], now: str) -> list[str]:
        import nats.errors

        if self._nc.is_closed:
            raise nats.errors.ConnectionClosedError
        futures = [
            await self._js.publish_async(
                self.subject, data, stream=self.stream_name, headers={_ID: event_id, _TIME: now}
            )
            for event_id, data in encoded
        ]
        try:
            acks = await asyncio.wait_for(asyncio.gather(*futures), _PUBLISH_TIMEOUT)
        except TimeoutError:
            raise nats.errors.TimeoutError from None
        return [str(a.seq) for a in acks]

    # ---------------------------------------------------------------- consuming
    async def _subscription(self, group: str) -> Any:
        """The group's pull subscription, made on first use (call under its lock)."""
        sub = self._subs.get(group)
        if sub is None:
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

            config = ConsumerConfig(
                durable_name=group,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_timeout,
                max_ack_pending=-1,
            )
            sub = await self._js.pull_subscribe(
                self.subject, durable=group, stream=self.stream_name, config=config
            )
            self._subs[group] = sub
        return sub

    def _message(self, msg: Any, deliveries: int) -> Message:
        import json

        headers = msg.headers or {}
        return Message(
            str(msg.metadata.sequence.stream),
            headers.get(_ID, ""),
            float(headers.get(_TIME, 0.0)),
            json.loads(msg.data),
            deliveries,
        )

    def consume(
        self, group: str, consumer: str, max: int = 100, block: float = 0.0
    ) -> list[Message]:
        check_consume_args(self.name, group, consumer, max, block)
        wait = float(block) if block > 0 else 0.05
        raw = self._run(self._fetch(group, max, wait), "consume", wait + _CALL_TIMEOUT)
        now = time.monotonic()
        out = []
        with self._mu:
            mine = self._inflight.setdefault(group, {})
            for msg in raw:
                m = self._message(msg, int(msg.metadata.num_delivered))
                mine[int(m.offset)] = (msg, now)
                out.append(m)
            # forget messages whose ack window is long gone (another consumer has them)
            stale = now - 10 * max_of(self._ack_timeout, 1.0)
            for off in [o for o, (_, t) in mine.items() if t < stale]:
                del mine[off]
        return out

    async def _fetch(self, group: str, limit: int, wait: float) -> list[Any]:
        lock = self._group_locks.setdefault(group, asyncio.Lock())  # (on the loop: atomic)
        async with lock:
            sub = await self._subscription(group)
            try:
                # nats-py's fetch can outlive its own timeout (it once gave no answer in
                # 30 s for a 0.3 s block); a fetch that found nothing within its block plus
                # a grace returns nothing, and what a cancelled fetch had received is
                # delivered again after the ack window.
                fetch = sub.fetch(batch=limit, timeout=wait)
                return list(await asyncio.wait_for(fetch, wait + 2))
            except TimeoutError:  # nats' own, or asyncio's from inside fetch: no messages
                return []

    def ack(self, group: str, offsets: Sequence[str]) -> int:
        check_group_name(group)
        seqs = check_offsets(self.name, offsets, _parse_offset)
        with self._mu:
            mine = self._inflight.get(group, {})
            picked = [(s, mine[s][0]) for s in dict.fromkeys(seqs) if s in mine]
        if not picked:
            return 0
        outcomes = self._run(self._ack([m for _, m in picked]), "ack")
        done, failed = 0, []
        with self._mu:
            mine = self._inflight.get(group, {})
            for (seq, msg), outcome in zip(picked, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed.append(outcome)  # still tracked: acking it again may work
                    continue
                done += outcome
                if seq in mine and mine[seq][0] is msg:  # (not a newer delivery of it)
                    del mine[seq]
        if failed:
            raise StreamError(
                f"{len(failed)} of {len(picked)} acks were not confirmed"
                f" ({failed[0]!r}); {done} were",
                op="ack",
                target=self._where,
                hint="ack them again (this handle still holds them); events never acked"
                " come back after stream_ack_timeout",
            )
        return done

    @staticmethod
    async def _ack(msgs: list[Any]) -> list[int | BaseException]:
        """Per message: 1 acked now, 0 acked before, or the error that kept it pending."""
        import nats.errors

        async def one(msg: Any) -> int | BaseException:
            try:
                await msg.ack_sync(timeout=_ACK_TIMEOUT)
                return 1
            except nats.errors.MsgAlreadyAckdError:
                return 0
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                return exc

        return list(await asyncio.gather(*(one(m) for m in msgs)))

    # ---------------------------------------------------------------- replay and info
    def replay(self, from_offset: str | None = None) -> Iterator[Message]:
        start = 1
        if from_offset is not None:
            start = check_offsets(self.name, [from_offset], _parse_offset)[0] + 1
        last = int(self._run(self._js.stream_info(self.stream_name), "replay").state.last_seq)
        if start > last:
            return
        sub = self._run(self._replay_sub(start), "replay")
        try:
            seq = start - 1
            while seq < last:
                batch = self._run(self._replay_fetch(sub), "replay")
                if not batch:
                    return
                for msg in batch:
                    seq = int(msg.metadata.sequence.stream)
                    if seq > last:
                        return
                    yield self._message(msg, 0)
        finally:
            if not self._closed:
                self._run(self._drop(sub), "replay")

    async def _replay_sub(self, start: int) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            inactive_threshold=60.0,
        )
        return await self._js.pull_subscribe(self.subject, stream=self.stream_name, config=config)

    @staticmethod
    async def _replay_fetch(sub: Any) -> list[Any]:
        import nats.errors

        try:
            return list(await sub.fetch(batch=_REPLAY_BATCH, timeout=2.0))
        except nats.errors.TimeoutError:
            return []

    async def _drop(self, sub: Any) -> None:
        info = await sub.consumer_info()
        await sub.unsubscribe()
        await self._js.delete_consumer(self.stream_name, info.name)

    def info(self) -> dict[str, Any]:
        async def gather() -> tuple[Any, list[Any]]:
            si = await self._js.stream_info(self.stream_name)
            consumers = await self._js.consumers_info(self.stream_name)
            return si, consumers

        si, consumers = self._run(gather(), "info")
        state = si.state
        groups = {
            c.config.durable_name: {"pending": int(c.num_ack_pending), "lag": int(c.num_pending)}
            for c in consumers
            if c.config.durable_name
        }
        return {
            "name": self.name,
            "backend": self.backend,
            "length": int(state.messages),
            "first_offset": str(state.first_seq) if state.messages else None,
            "last_offset": str(state.last_seq) if state.messages else None,
            "stream": self.stream_name,
            "groups": groups,
        }

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._loop.run(self._nc.close(), "close", self._where, 10.0)
        except StreamError:
            pass  # the server is gone: nothing left to flush
        finally:
            self._closed = True
            self._loop.stop()


def max_of(a: float, b: float) -> float:
    return a if a > b else b
