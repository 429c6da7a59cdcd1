"""The JSON Schema editors use agrees with the pydantic models on the example specs, and the
committed schema/site-spec.schema.json is current (`python build.py schema -o schema/site-spec.schema.json`)."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from compiler.commands import SCHEMA_FILE, json_schema, schema_text
from compiler.spec import SiteSpec
from compiler.spec.yamlsource import read_yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "specs").glob("*.yaml") if not p.name.startswith("secrets"))
CASES = Path(__file__).resolve().parent / "cases"
VALID_CASES = sorted(CASES.glob("*__valid.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(validator, data) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]


def test_there_are_example_specs():
    assert {p.name for p in EXAMPLES} >= {"demo-site.yaml", "tower-crane-site.yaml", "small-site-rv1106.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_matches_schema_and_models(path, validator):
    doc = read_yaml(path)
    assert doc.problems == [], doc.problems
    assert _schema_errors(validator, doc.data) == []
    SiteSpec.model_validate(doc.data)


@pytest.mark.parametrize("path", VALID_CASES, ids=lambda p: p.stem)
def test_valid_case_matches_schema(path, validator, monkeypatch):
    monkeypatch.setenv("SITEWARDEN_TEST_TOKEN", "token-from-env")
    monkeypatch.delenv("SITEWARDEN_TEST_UNSET", raising=False)
    doc = read_yaml(path)
    assert doc.problems == []
    assert _schema_errors(validator, doc.data) == []


def test_committed_schema_is_current(repo_root):
    assert SCHEMA_FILE == repo_root / "schema" / "site-spec.schema.json"
    assert SCHEMA_FILE.is_file(), "generate it: python build.py schema -o schema/site-spec.schema.json"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schema/site-spec.schema.json is stale: python build.py schema -o schema/site-spec.schema.json"
    )


def _demo() -> dict:
    return read_yaml(REPO / "specs" / "demo-site.yaml").data


def _set(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


# Changes the models reject for a type, enum or unknown-key reason: the schema must reject them too.
REJECTED = [
    ("unknown-top-level-key", ("camera",), []),
    ("unknown-camera-key", ("cameras", 0, "zone"), []),
    ("unknown-zone-key", ("cameras", 0, "zones", 0, "inertia_frmes"), 3),
    ("zone-kind-enum", ("cameras", 0, "zones", 0, "kind"), "dangr"),
    ("fps-type", ("defaults", "fps"), "fast"),
    ("fps-range", ("defaults", "fps"), 100),
    ("resolution-arity", ("defaults", "resolution"), [640, 360, 3]),
    ("cameras-type", ("cameras",), {"id": "x"}),
    ("cameras-empty", ("cameras",), []),
    ("site-name-pattern", ("site", "name"), "Demo Site"),
    ("severity-enum", ("ppe", 0, "where"), 5),
    ("ppe-item-enum", ("ppe", 0, "require"), ["gloves"]),
    ("posture-enum", ("actions", 0, "detect"), ["falen"]),
    ("health-check-enum", ("health", 0, "detect"), ["blured"]),
    ("prefer-enum", ("models", "prefer"), "fast"),
    ("sink-unknown-kind", ("alerts", "sinks", 0), {"kafka": "x"}),
    ("sink-two-kinds", ("alerts", "sinks", 0), {"file": "a.jsonl", "http": "https://x"}),
    ("sink-event-enum", ("alerts", "sinks", 0), {"file": "a.jsonl", "events": ["zone_intrusoin"]}),
    ("mqtt-qos-enum", ("alerts", "sinks", 0), {"mqtt": "mqtt://b", "qos": 3}),
    ("situation-missing-models", ("situations", 0), {"id": "night", "when": {"flag": "dark"}}),
    ("calibration-point-arity", ("cameras", 0, "calibration", "image", 0), [1, 2, 3]),
    ("custom-decoder-enum", ("models", "detector"), {"custom": {"onnx": "a.onnx", "decoder": "yolo", "classes": {"0": "person"}}}),
]


@pytest.mark.parametrize("path, value", [pytest.param(p, v, id=i) for i, p, v in REJECTED])
def test_schema_rejects_what_the_models_reject(path, value, validator):
    data = _set(_demo(), path, value)
    with pytest.raises(ValidationError) as models_said:
        SiteSpec.model_validate(data)
    assert _schema_errors(validator, data), f"the JSON schema accepts what the models reject: {models_said.value}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_passes_every_check_with_the_real_boards(path, repo_root, monkeypatch):
    from compiler.spec import load_spec

    monkeypatch.chdir(repo_root)
    result = load_spec(path.relative_to(repo_root), check_boards=True)
    if result.errors and all(e.path.endswith(".source") and "no file at" in e.message for e in result.errors):
        pytest.skip(f"footage not here: {result.report()}")
    assert result.ok, result.report()
