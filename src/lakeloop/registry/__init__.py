"""The registry: model versions with lineage, flavors, and aliases such as ``champion``.

Public surface::

    reg = Registry(lake)
    reg.register("digits", model, lineage=Lineage(snapshots=..., code=..., params=...))
    reg.load("digits@champion") / ("digits@3") / ("digits@latest") -> LoadedModel
        .predict(batch), .version, .lineage, .model
    reg.models() / reg.versions("digits") / reg.get("digits@3") / reg.aliases("digits")
    reg.alias("digits@3", "challenger", reason="...")          # any alias but champion
    reg.promote("digits@3", decision=record)  # champion: the gate's way, only while
                                              # champion is the one record compared with
    reg.alias("digits@3", "champion", force=True, reason="...")  # recorded override
    reg.history("digits") -> [AliasMove]                       # who, when, why
    reg.record_decision("digits", record) / reg.decisions("digits")  # every gate decision
    reg.decision("digits", 7)                                  # one, by its id

Flavors (``keras``, ``sklearn``, ``pyfunc``) are subclasses of :class:`Flavor`. See
docs/registry.md.
"""

from lakeloop.registry._flavors import (
    FLAVORS,
    Flavor,
    KerasFlavor,
    PyfuncFlavor,
    SklearnFlavor,
    flavor_for,
)
from lakeloop.registry._registry import (
    CHAMPION,
    AliasMove,
    Lineage,
    LoadedModel,
    ModelVersion,
    Registry,
    parse_model_ref,
)

__all__ = [
    "CHAMPION",
    "FLAVORS",
    "AliasMove",
    "Flavor",
    "KerasFlavor",
    "Lineage",
    "LoadedModel",
    "ModelVersion",
    "PyfuncFlavor",
    "Registry",
    "SklearnFlavor",
    "flavor_for",
    "parse_model_ref",
]
