"""The loader turns every kind of bad input into located errors; it never raises.

Each row writes a few files into tmp_path (the spec is `spec.yaml`), loads the spec from there,
and expects errors (line, col, message fragment) or a clean load. Paths are shown relative to
tmp_path because the test runs from it.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from compiler.spec import load_spec

OK_BODY = "site: {name: edge-site}\ncameras:\n  - id: gate\n    source: rtsp://10.0.0.5/stream1\n"


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging (a recursive alias, a runaway include)."""

    def expired(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def load_in(tmp_path: Path, files: dict[str, str | bytes], boards, spec: str = "spec.yaml"):
    for name, content in files.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    with deadline(10):
        return load_spec(spec, boards=boards)


# (id, files, expected errors as (line, col, fragment) -- line/col None: not checked)
ERROR_CASES = [
    ("syntax-error", {"spec.yaml": "site: {name: a\ncameras: [\n"}, [(2, 8, "YAML syntax error")]),
    ("bad-indent", {"spec.yaml": "site:\n  name: a\n timezone: UTC\n"}, [(3, 2, "YAML syntax error")]),
    ("tab-indent", {"spec.yaml": "site:\n\tname: a\n"}, [(2, 1, "found character '\\t'")]),
    ("empty-file", {"spec.yaml": ""}, [(1, 1, "the spec is empty")]),
    ("comments-only", {"spec.yaml": "# nothing yet\n"}, [(1, 1, "the spec is empty")]),
    ("top-level-list", {"spec.yaml": "- site\n- cameras\n"}, [(1, 1, "not a list")]),
    ("top-level-scalar", {"spec.yaml": "hello\n"}, [(1, 1, "not a str")]),
    ("two-documents", {"spec.yaml": OK_BODY + "---\n" + OK_BODY}, [(5, 1, "another document")]),
    (
        "wrong-types",
        {"spec.yaml": "site: riverside\ncameras: {id: gate}\nppe: 5\n"},
        [(1, 7, "site: Input should be a valid dictionary"), (2, 10, "cameras: Input should be a valid list"),
         (3, 6, "ppe: Input should be a valid list")],
    ),
    (
        "circular-include",
        {"spec.yaml": "site: {name: a}\ncameras: !include b.yaml\n", "b.yaml": "!include spec.yaml\n"},
        [(1, 1, "circular include: spec.yaml -> b.yaml -> spec.yaml")],
    ),
    (
        "include-missing",
        {"spec.yaml": "site: {name: a}\ncameras: !include parts/cameras.yaml\n"},
        [(2, 10, "!include: no such file parts/cameras.yaml (paths are relative to spec.yaml)")],
    ),
    (
        "include-a-folder",
        {"spec.yaml": "site: {name: a}\ncameras: !include parts\n", "parts/x.yaml": "[]\n"},
        [(2, 10, "!include: no such file parts")],
    ),
    (
        "secret-without-secrets-file",
        {"spec.yaml": OK_BODY + "alerts: {sinks: [{http: 'https://vms/api', token: !secret vms_token}]}\n"},
        [(5, 51, "secret 'vms_token' is not in secrets.yaml")],
    ),
    (
        "secret-not-in-secrets-file",  # a real secrets.yaml exists: its placeholder sibling is not consulted
        {
            "spec.yaml": OK_BODY + "alerts: {sinks: [{http: 'https://vms/api', token: !secret vms_token}]}\n",
            "secrets.yaml": "other: x\n",
            "secrets.example.yaml": "vms_token: placeholder\n",
        },
        [(5, 51, "secret 'vms_token' is not in secrets.yaml")],
    ),
    (
        "secrets-file-not-a-mapping",
        {"spec.yaml": OK_BODY + "alerts: {sinks: [{http: 'https://vms/api', token: !secret vms_token}]}\n",
         "secrets.yaml": "- vms_token\n"},
        [(1, 1, "secrets file must be a mapping"), (5, 51, "secret 'vms_token' is not in secrets.yaml")],
    ),
    (
        "env-unset",
        {"spec.yaml": OK_BODY + "alerts: {sinks: [{http: 'https://vms/api', token: !env SW_EDGE_UNSET}]}\n"},
        [(5, 51, "environment variable SW_EDGE_UNSET is not set")],
    ),
    ("unknown-tag", {"spec.yaml": "site: !site {name: a}\ncameras: []\n"}, [(1, 7, "unknown tag !site")]),
    # a python tag never runs anything: it is refused where it is written
    ("python-tag-is-not-run", {"spec.yaml": "site: !!python/object/apply:os.system [echo hi]\n"},
     [(1, 7, "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed")]),
    ("python-tag-on-a-scalar", {"spec.yaml": "site: !!python/name:os.system x\n"},
     [(1, 7, "is not allowed in a spec")]),
    ("alias-bomb", {"spec.yaml": "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(6))},
     [(None, None, "expands to more than")]),
    (
        "duplicate-keys",
        {"spec.yaml": OK_BODY + "site: {name: b}\n"},
        [(5, 1, "key 'site' appears twice in this mapping (first at line 1)")],
    ),
    (
        "duplicate-nested-keys",
        {"spec.yaml": "site:\n  name: a\n  timezone: UTC\n  name: b\ncameras: []\n"},
        [(4, 3, "key 'name' appears twice")],
    ),
    ("non-utf8", {"spec.yaml": b"site: {name: a}\ncameras: []\n# caf\xe9\n"}, [(3, 1, "not UTF-8 text")]),
    ("utf16", {"spec.yaml": OK_BODY.encode("utf-16")}, [(1, 1, "not UTF-8 text")]),
    ("nul-bytes", {"spec.yaml": b"site: {name: a}\x00\n"}, [(1, 1, "contains NUL bytes")]),
    ("control-character", {"spec.yaml": "site: {name: a}\ncameras: [\x07]\n"}, [(2, 11, "#x0007")]),
    ("recursive-alias", {"spec.yaml": "site: &s {name: *s}\ncameras: []\n"}, [(None, None, "recursive alias")]),
    ("recursive-list-alias", {"spec.yaml": "cameras: &c [*c]\nsite: {name: a}\n"}, [(None, None, "recursive alias")]),
    ("very-deep-nesting", {"spec.yaml": "cameras: " + "[" * 3000 + "\n"}, [(None, None, "nesting too deep")]),
    ("huge-integer", {"spec.yaml": OK_BODY.replace("gate\n", "gate\n    fps: 1" + "0" * 5000 + "\n")},
     [(4, 10, "cannot read this value")]),
    ("bad-merge", {"spec.yaml": "site:\n  <<: [1, 2]\n  name: a\ncameras: []\n"}, [(None, None, "YAML merge error")]),
    ("complex-key", {"spec.yaml": "? [a, b]\n: 1\n" + OK_BODY}, [(1, 3, "a key must be a plain value")]),
]


@pytest.mark.parametrize("files, expected", [pytest.param(f, e, id=i) for i, f, e in ERROR_CASES])
def test_bad_input_is_a_located_error(files, expected, tmp_path, monkeypatch, fake_boards):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SW_EDGE_UNSET", raising=False)
    result = load_in(tmp_path, files, fake_boards)
    assert not result.ok and result.spec is None
    for line, col, fragment in expected:
        hits = [e for e in result.errors if fragment in str(e)]
        assert hits, f"no error containing {fragment!r} in:\n{result.report()}"
        if line is not None:
            assert (hits[0].mark.line, hits[0].mark.col) == (line, col), str(hits[0])
    for e in result.errors:
        assert e.mark is not None and e.mark.line >= 1 and e.mark.col >= 1, str(e)


def test_missing_file(tmp_path, monkeypatch, fake_boards):
    monkeypatch.chdir(tmp_path)
    result = load_spec("nope.yaml", boards=fake_boards)
    assert [str(e) for e in result.errors] == ["nope.yaml: no such file: nope.yaml"]
    assert not result.ok


def test_folder_instead_of_file(tmp_path, monkeypatch, fake_boards):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    result = load_spec("specs", boards=fake_boards)
    assert [str(e) for e in result.errors] == ["specs: is a folder; give the spec's YAML file"]


def test_unreadable_file(tmp_path, monkeypatch, fake_boards):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(OK_BODY)
    (tmp_path / "spec.yaml").chmod(0)
    result = load_spec("spec.yaml", boards=fake_boards)
    assert "cannot read spec.yaml" in result.report()


SINK = "alerts: {sinks: [{http: 'https://vms/api', token: %s}]}\n"


@pytest.mark.parametrize(
    "token, files, env, expected_token, expected_warning",
    [
        pytest.param("!secret vms_token", {"secrets.yaml": "vms_token: real\n"}, {}, "real", None, id="secrets.yaml"),
        pytest.param(
            "!secret vms_token", {"secrets.yaml": "vms_token: real\n", "secrets.example.yaml": "vms_token: fake\n"},
            {}, "real", None, id="secrets.yaml-wins",
        ),
        pytest.param(
            "!secret vms_token", {"secrets.example.yaml": "vms_token: placeholder\n"}, {}, "placeholder",
            "5:51: warning: secret 'vms_token' comes from secrets.example.yaml (a placeholder); put the real value "
            "in secrets.yaml before going to site",
            id="example-fallback-warns",
        ),
        pytest.param("!env SW_EDGE_TOKEN", {}, {"SW_EDGE_TOKEN": "from-env"}, "from-env", None, id="env-set"),
        pytest.param("!env [SW_EDGE_UNSET, fallback]", {}, {}, "fallback", None, id="env-default"),
        pytest.param("!env [SW_EDGE_TOKEN, fallback]", {}, {"SW_EDGE_TOKEN": "wins"}, "wins", None, id="env-beats-default"),
    ],
)
def test_secrets_and_env_resolve(token, files, env, expected_token, expected_warning, tmp_path, monkeypatch, fake_boards):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SW_EDGE_UNSET", raising=False)
    monkeypatch.delenv("SW_EDGE_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = load_in(tmp_path, {"spec.yaml": OK_BODY + SINK % token, **files}, fake_boards)
    assert result.ok, result.report()
    assert result.spec.alerts.sinks[0].token == expected_token
    if expected_warning is None:
        assert result.warnings == []
    else:
        assert [str(w) for w in result.warnings] == [f"spec.yaml:{expected_warning}"]


def test_secret_in_an_included_file_is_found_beside_the_spec(tmp_path, monkeypatch, fake_boards):
    monkeypatch.chdir(tmp_path)
    result = load_in(
        tmp_path,
        {
            "spec.yaml": OK_BODY + "alerts: {sinks: !include parts/sinks.yaml}\n",
            "parts/sinks.yaml": "- {http: 'https://vms/api', token: !secret vms_token}\n",
            "secrets.yaml": "vms_token: real\n",
        },
        fake_boards,
    )
    assert result.ok, result.report()
    assert result.spec.alerts.sinks[0].token == "real"


def test_merge_keys_work_and_own_keys_override(tmp_path, monkeypatch, fake_boards):
    monkeypatch.chdir(tmp_path)
    text = (
        "x-base: &cam {source: 'rtsp://10.0.0.5/s', fps: 5}\n"  # not a section: reported, then removed below
        "site: {name: a}\n"
        "cameras:\n"
        "  - <<: *cam\n    id: one\n"
        "  - <<: *cam\n    id: two\n    fps: 12\n"
    )
    result = load_in(tmp_path, {"spec.yaml": text}, fake_boards)
    assert [str(e) for e in result.errors] == ["spec.yaml:1:1: x-base: unknown key 'x-base' (allowed: actions, alerts, "
                                               "cameras, defaults, devices, health, models, ppe, site, situations)"]
    text = text.replace("x-base: &cam {source: 'rtsp://10.0.0.5/s', fps: 5}\n", "").replace(
        "  - <<: *cam\n    id: one\n", "  - &cam {source: 'rtsp://10.0.0.5/s', fps: 5, id: one}\n")
    result = load_in(tmp_path, {"spec.yaml": text}, fake_boards)
    assert result.ok, result.report()
    assert [(c.id, c.source, c.fps) for c in result.spec.cameras] == [
        ("one", "rtsp://10.0.0.5/s", 5), ("two", "rtsp://10.0.0.5/s", 12),
    ]


def test_merge_of_a_list_of_mappings_and_an_alias_visited_twice(tmp_path, monkeypatch, fake_boards):
    """`<<: [*a, *b]` (earlier mappings win), and a merged mapping reached again through an alias."""
    monkeypatch.chdir(tmp_path)
    text = (
        "site: {name: a}\n"
        "cameras:\n"
        "  - &one {id: one, source: 'usb:0', fps: 5}\n"
        "  - &two {id: two, source: 'usb:1', fps: 7, description: second}\n"
        "  - &three\n    <<: [*one, *two]\n    id: three\n"
        "health:\n  - {cameras: [one]}\n"
    )
    result = load_in(tmp_path, {"spec.yaml": text}, fake_boards)
    assert result.ok, result.report()
    three = result.spec.cameras[2]
    assert (three.id, three.source, three.fps, three.description) == ("three", "usb:0", 5, "second")
    # the flattened mapping reached again through an alias: its own `id` still overrides, no "appears twice"
    result = load_in(tmp_path, {"spec.yaml": text.replace("health:", "  - *three\nhealth:")}, fake_boards)
    assert [str(e) for e in result.errors] == ["spec.yaml:7:9: cameras[3].id: camera id 'three' is used twice; ids must be unique"]


def test_anchor_reuse_does_not_repeat_errors_wrongly(tmp_path, monkeypatch, fake_boards):
    """An alias reuses the anchored data: an error in it is reported at each use, located at the anchor."""
    monkeypatch.chdir(tmp_path)
    text = "site: {name: a}\ncameras:\n  - &c {id: one, source: 'ftp://x'}\n  - *c\n"
    result = load_in(tmp_path, {"spec.yaml": text}, fake_boards)
    assert [(e.path, e.mark.line) for e in result.errors] == [("cameras[0].source", 3), ("cameras[1].source", 3)]
