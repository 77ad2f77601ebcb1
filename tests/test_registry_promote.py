"""Promotion as a compare-and-set on the champion a decision was compared with, on a
local lake and through a real gateway, and what the gateway checks in a client's
decision before it moves champion."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from _registry_models import Doubler
from lakeloop import Lake
from lakeloop.errors import InvalidInput, NotFound, Refused
from lakeloop.registry import Registry


def _decision(reg: Registry, name: str, candidate: int, champion: int | None) -> dict[str, Any]:
    """A promoting decision about NAME@candidate compared with NAME@champion, recorded."""
    return reg.record_decision(
        name,
        {
            "kind": "ci",
            "outcome": "promote",
            "passed": True,
            "candidate": f"{name}@{candidate}",
            "champion": None if champion is None else f"{name}@{champion}",
            "promoted": True,
        },
    )


def _state(reg: Registry, name: str) -> tuple[Any, ...]:
    return reg.aliases(name), reg.history(name), reg.decisions(name)


def test_two_gates_against_the_same_champion_cannot_both_promote(lake: Lake) -> None:
    reg = Registry(lake)
    for _ in range(4):
        reg.register("m", Doubler())
    reg.promote("m@1", decision=_decision(reg, "m", 1, None))
    # ci gated m@2 and the loop gated m@3, both against champion m@1
    by_ci, by_loop = _decision(reg, "m", 2, 1), _decision(reg, "m", 3, 1)
    reg.promote("m@2", decision=by_ci)
    before = _state(reg, "m")
    with pytest.raises(Refused, match=r"champion moved: champion is m@2.*compared m@3 with m@1"):
        reg.promote("m@3", decision=by_loop)
    assert _state(reg, "m") == before  # nothing changed
    # compared with the new champion, it may promote
    reg.promote("m@3", decision=_decision(reg, "m", 3, 2))
    assert reg.aliases("m") == {"champion": 3}
    moves = reg.history("m")
    assert all(
        move.decision is not None and move.decision["champion"] == (
            None if move.previous is None else f"m@{move.previous}"
        )
        for move in moves
    )  # fmt: skip
    # a first promotion expects no champion at all; an explicit champion= wins
    with pytest.raises(Refused, match="champion moved"):
        reg.promote("m@4", decision={"outcome": "promote", "champion": None})
    reg.promote("m@4", decision={"outcome": "promote"}, champion="m@3")
    assert reg.aliases("m") == {"champion": 4}


def test_a_promotion_must_name_the_champion_it_was_compared_with(lake: Lake) -> None:
    reg = Registry(lake)
    reg.register("m", Doubler())
    with pytest.raises(Refused, match="does not name the champion"):
        reg.promote("m@1", decision={"outcome": "promote"})
    for bad in ("other@1", "m@0", "m@x", 1.5, True):
        with pytest.raises(InvalidInput, match="bad champion"):
            reg.promote("m@1", decision={"outcome": "promote"}, champion=bad)
    assert reg.aliases("m") == {} and reg.history("m") == []
    assert reg.decision("m", _decision(reg, "m", 1, None)["id"])["candidate"] == "m@1"
    with pytest.raises(NotFound, match="no decision 9"):
        reg.decision("m", 9)


def test_promote_to_another_alias_compares_the_champion(lake: Lake) -> None:
    reg = Registry(lake)
    for _ in range(3):
        reg.register("m", Doubler())
    reg.promote("m@1", decision=_decision(reg, "m", 1, None))
    reg.promote("m@2", decision=_decision(reg, "m", 2, 1), alias="staging")
    assert reg.aliases("m") == {"champion": 1, "staging": 2}
    reg.promote("m@3", decision=_decision(reg, "m", 3, 1))
    before = _state(reg, "m")
    with pytest.raises(Refused, match=r"champion moved: champion is m@3.*compared m@2 with m@1"):
        reg.promote("m@2", decision=_decision(reg, "m", 2, 1), alias="staging")
    assert _state(reg, "m")[:2] == before[:2]


def test_a_champion_argument_contradicting_the_record_is_refused(lake: Lake) -> None:
    reg = Registry(lake)
    for _ in range(3):
        reg.register("m", Doubler())
    reg.promote("m@1", decision=_decision(reg, "m", 1, None))
    reg.promote("m@2", decision=_decision(reg, "m", 2, 1))
    stale = _decision(reg, "m", 3, 1)  # compared with m@1, the champion before
    before = _state(reg, "m")
    with pytest.raises(Refused, match="the decision compared with m@1, not m@2"):
        reg.promote("m@3", decision=stale, champion="m@2")
    with pytest.raises(Refused, match="compared with no version, not m@2"):
        reg.promote("m@3", decision={**stale, "champion": None}, champion=2)
    assert _state(reg, "m") == before
    reg.promote("m@3", decision=_decision(reg, "m", 3, 2), champion=2)  # agreeing: moves
    assert reg.aliases("m") == {"champion": 3}


# ------------------------------------------------------------------------ over a gateway
def _remote(gw: Any, key: Any) -> Any:
    return Lake.open(gw.url, access_key=key.access, secret_key=key.secret)


def test_the_gateway_promotes_only_on_a_recorded_decision_about_this_candidate(
    gateway: Any,
) -> None:
    gw = gateway
    name = f"p-{uuid.uuid4().hex[:8]}"
    writer = gw.user(f"w-{uuid.uuid4().hex[:8]}", {"@models": "write"})
    local = Registry(gw.lake)
    with _remote(gw, writer) as lake:
        reg = Registry(lake)
        for _ in range(3):
            reg.register(name, Doubler())
        first = _decision(reg, name, 1, None)
        reg.promote(f"{name}@1", decision=first)
        before = _state(local, name)
        # each made-up decision is about @2 vs @1, the move the gateway would make: only
        # its own check stops it (a real record, @2 vs @1, is stored as `second`)
        second = _decision(reg, name, 2, 1)
        unrecorded = {k: v for k, v in second.items() if k != "id"}
        with pytest.raises(Refused, match="needs a decision recorded in the lake"):
            reg.promote(f"{name}@2", decision=unrecorded)
        with pytest.raises(NotFound, match="no decision 99 recorded"):
            reg.promote(f"{name}@2", decision={**second, "id": 99})
        with pytest.raises(Refused, match=f"differs from decision {second['id']} recorded"):
            reg.promote(f"{name}@2", decision={**second, "reasons": ["edited"]})
        with pytest.raises(Refused, match="is about"):  # a decision about another version
            reg.promote(f"{name}@2", decision=_decision(reg, name, 3, 1))
        off = reg.record_decision(
            name,
            {"outcome": "promote", "candidate": f"{name}@2", "champion": f"{name}@1",
             "promoted": False},
        )  # fmt: skip
        with pytest.raises(Refused, match="promotion turned off"):
            reg.promote(f"{name}@2", decision=off)
        blocked = reg.record_decision(
            name, {"outcome": "block", "candidate": f"{name}@2", "champion": f"{name}@1"}
        )
        with pytest.raises(Refused, match="'block'"):
            reg.promote(f"{name}@2", decision=blocked)
        assert _state(local, name)[:2] == before[:2]  # champion and history untouched
        # two gates against champion @1: the second is refused by the gateway's check
        by_ci, by_loop = _decision(reg, name, 2, 1), _decision(reg, name, 3, 1)
        reg.promote(f"{name}@2", decision=by_ci)
        moved = _state(local, name)[:2]
        with pytest.raises(Refused, match="champion moved"):
            reg.promote(f"{name}@3", decision=by_loop)
        with pytest.raises(Refused, match=f"compared with {name}@1, not {name}@2"):
            reg.promote(f"{name}@3", decision=by_loop, champion=f"{name}@2")  # refused here
        body = {"version": "3", "decision": by_loop, "champion": f"{name}@2"}
        with pytest.raises(Refused, match=f"compared with '{name}@1', not '{name}@2'"):
            lake.api("POST", f"/models/{name}/promote", body=body)  # and by the gateway
        assert _state(local, name)[:2] == moved
        reg.promote(f"{name}@3", decision=_decision(reg, name, 3, 2), reason="again")
        # the endpoint takes another alias: it moves on a decision against the champion
        reg.promote(f"{name}@2", decision=_decision(reg, name, 2, 3), alias="staging")
    assert local.aliases(name) == {"champion": 3, "staging": 2}
    gates = [m for m in local.history(name) if m.kind == "gate" and m.alias == "champion"]
    assert [(m.previous, m.version) for m in gates] == [(None, 1), (1, 2), (2, 3)]
    assert all(m.decision == local.decision(name, m.decision["id"]) for m in gates if m.decision)
