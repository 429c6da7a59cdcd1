"""Property: whatever is done to an example spec, `load_spec` returns located errors and never
raises. Mutations: delete keys, misspell keys, swap a value's type (str/int/float/bool/list/
dict/None), put random unicode into strings; and on the text: delete, insert (YAML punctuation,
random unicode, raw bytes), truncate.

Deterministic (derandomize, no example database) and bounded, so it runs the same in CI.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.spec import load_spec
from compiler.spec.yamlsource import read_yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "specs").glob("*.yaml") if not p.name.startswith("secrets"))
NAMES = [p.name for p in EXAMPLES]
RAW = {p.name: p.read_text(encoding="utf-8") for p in EXAMPLES}
RESOLVED = {p.name: read_yaml(p).data for p in EXAMPLES}

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
)
YAML_CHARS = st.sampled_from(list("[]{}:,-#&*!|>'\"?%@`\\\n\t ~<=") + ["- ", ": ", "\n  ", "!include ", "!secret ", "!env ", "<<: ", "&a ", "*a"])


def _paths(node, at=()):
    """Every (container, key) location in the tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*at, k)
            yield from _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*at, i)
            yield from _paths(v, (*at, i))


def _parent(tree, path):
    for part in path[:-1]:
        tree = tree[part]
    return tree


def _assert_located(result) -> None:
    for problem in [*result.errors, *result.warnings]:
        assert problem.mark is not None, f"error without a location: {problem}"
        assert problem.mark.file, str(problem)
        assert problem.mark.line >= 1 and problem.mark.col >= 1, str(problem)
        assert problem.message.strip(), repr(problem)
        assert str(problem).startswith(f"{problem.mark.file}:{problem.mark.line}:{problem.mark.col}: ")
    if result.ok:
        assert result.spec is not None and not result.errors
    else:
        assert result.errors, "not ok, yet no error says why"


def _workdir(tmp_path_factory) -> Path:
    """A copy of specs/'s neighbourhood: included zones and the secrets placeholders."""
    work = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "specs" / "zones", work / "zones")
    shutil.copy(REPO / "specs" / "secrets.example.yaml", work / "secrets.example.yaml")
    return work


def test_examples_load_as_they_are(tmp_path_factory, fake_boards):
    work = _workdir(tmp_path_factory)
    for name in NAMES:
        (work / name).write_text(RAW[name], encoding="utf-8")
        result = load_spec(work / name, boards=fake_boards)
        _assert_located(result)
        # file: sources point at ../../shared/data relative to specs/, which the copy does not have
        assert all(e.path.endswith("source") for e in result.errors), result.report()


def test_mutated_data_gives_located_errors(tmp_path_factory, fake_boards):
    work = _workdir(tmp_path_factory)

    @FUZZ
    @given(name=st.sampled_from(NAMES), data=st.data())
    def run(name, data):
        tree = copy.deepcopy(RESOLVED[name])
        for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="mutations")):
            paths = list(_paths(tree))
            if not paths:
                break
            path = data.draw(st.sampled_from(paths), label="path")
            parent, key = _parent(tree, path), path[-1]
            op = data.draw(st.sampled_from(["delete", "swap", "unicode", "rename"]), label="op")
            if op == "delete":
                del parent[key]
            elif op == "swap":
                parent[key] = data.draw(VALUES, label="value")
            elif op == "unicode":
                old = parent[key]
                noise = data.draw(st.text(min_size=1, max_size=6), label="noise")
                parent[key] = (old + noise) if isinstance(old, str) else noise
            elif isinstance(parent, dict):
                typo = data.draw(st.text(min_size=1, max_size=3), label="typo")
                parent[f"{key}{typo}"] = parent.pop(key)
        target = work / f"mutated-{name}"
        target.write_text(yaml.safe_dump(tree, allow_unicode=True, sort_keys=False), encoding="utf-8")
        _assert_located(load_spec(target, boards=fake_boards))

    run()


def test_mutated_text_gives_located_errors(tmp_path_factory, fake_boards):
    work = _workdir(tmp_path_factory)

    @FUZZ
    @given(name=st.sampled_from(NAMES), data=st.data())
    def run(name, data):
        raw = RAW[name].encode("utf-8")
        for _ in range(data.draw(st.integers(min_value=1, max_value=5), label="mutations")):
            pos = data.draw(st.integers(min_value=0, max_value=len(raw)), label="pos")
            op = data.draw(st.sampled_from(["delete", "insert", "unicode", "truncate", "bytes"]), label="op")
            if op == "delete":
                raw = raw[:pos] + raw[pos + data.draw(st.integers(min_value=1, max_value=20), label="n"):]
            elif op == "insert":
                raw = raw[:pos] + data.draw(YAML_CHARS, label="chars").encode() + raw[pos:]
            elif op == "unicode":
                raw = raw[:pos] + data.draw(st.text(min_size=1, max_size=8), label="text").encode("utf-8") + raw[pos:]
            elif op == "truncate":
                raw = raw[:pos]
            else:
                raw = raw[:pos] + data.draw(st.binary(min_size=1, max_size=4), label="bytes") + raw[pos:]
        target = work / f"mutated-{name}"
        target.write_bytes(raw)
        _assert_located(load_spec(target, boards=fake_boards))

    run()
