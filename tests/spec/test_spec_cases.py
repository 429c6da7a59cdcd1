"""Paired `<section>__valid.yaml` / `<section>__invalid.yaml` cases, one pair per section.

A valid case loads with no errors; an invalid case reports several errors, each at file:line:col.
Whatever a case reports (errors and warnings) must equal its golden file `golden/<case>.txt`
exactly; regenerate the golden files with `pytest --update-golden` and review the diff.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from compiler.spec import load_spec

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
GOLDEN = HERE / "golden"
SECTIONS = (
    "site", "defaults", "cameras", "calibration", "zones", "devices", "ppe", "actions", "health",
    "alerts", "models", "situations", "include", "secret", "env", "merge",
)
VALID = sorted(p.stem for p in CASES.glob("*__valid.yaml"))
INVALID = sorted(p.stem for p in CASES.glob("*__invalid.yaml"))


def _load(case: str, boards):
    return load_spec(Path("tests/spec/cases") / f"{case}.yaml", boards=boards)


def _golden_cases(boards) -> dict[str, str]:
    """case -> report, for every case whose report is not empty."""
    out = {}
    for case in VALID + INVALID:
        report = _load(case, boards).report()
        if report:
            out[case] = report
    return out


def test_every_section_has_a_valid_and_an_invalid_case():
    for section in SECTIONS:
        assert f"{section}__valid" in VALID, f"add tests/spec/cases/{section}__valid.yaml"
        assert f"{section}__invalid" in INVALID, f"add tests/spec/cases/{section}__invalid.yaml"


@pytest.mark.parametrize("case", VALID)
def test_valid_case_loads(case, in_repo, fake_boards, golden):
    result = _load(case, fake_boards)
    assert result.errors == [], result.report()
    assert result.ok and result.spec is not None
    if result.warnings:
        golden.check(GOLDEN / f"{case}.txt", result.report())


@pytest.mark.parametrize("case", INVALID)
def test_invalid_case_reports_every_error(case, in_repo, fake_boards, golden):
    result = _load(case, fake_boards)
    assert not result.ok and result.spec is None
    assert len(result.errors) >= 2, f"an invalid case should show several errors at once:\n{result.report()}"
    for error in result.errors:
        assert error.mark is not None, str(error)
        assert error.mark.line >= 1 and error.mark.col >= 1, str(error)
        assert str(error).startswith(f"{error.mark.file}:{error.mark.line}:{error.mark.col}: ")
        assert error.message
    golden.check(GOLDEN / f"{case}.txt", result.report())


def test_no_stale_golden_files(in_repo, fake_boards, update_golden):
    """Every golden file belongs to a case that reports something, and says exactly that."""
    wanted = _golden_cases(fake_boards)
    present = {p.stem for p in GOLDEN.glob("*.txt")}
    orphans = sorted(present - set(wanted))
    if update_golden:
        for name in orphans:
            (GOLDEN / f"{name}.txt").unlink()
        return
    assert not orphans, f"golden files without a case (delete them or run --update-golden): {orphans}"
    missing = sorted(set(wanted) - present)
    assert not missing, f"golden files missing (run `pytest --update-golden`): {missing}"
    stale = sorted(n for n, text in wanted.items() if (GOLDEN / f"{n}.txt").read_text(encoding="utf-8") != text + "\n")
    assert not stale, f"golden files out of date (run `pytest --update-golden`): {stale}"


def test_headline_polygon_and_typo_both_reported(in_repo, fake_boards):
    """The issue's example: a 2-vertex polygon and `inertia_frmes` give two located errors."""
    result = _load("headline__invalid", fake_boards)
    assert [str(e) for e in result.errors] == [
        "tests/spec/cases/headline__invalid.yaml:9:18: cameras[0].zones[0].polygon: a polygon needs at least 3 "
        "vertices, got 2; list the corners as [[x, y], ...]",
        "tests/spec/cases/headline__invalid.yaml:10:9: cameras[0].zones[0].inertia_frmes: unknown key "
        "'inertia_frmes'; did you mean 'inertia_frames'?",
    ]


def test_valid_cases_resolve_loader_features(in_repo, fake_boards):
    """The loader cases produce the data they promise, not just an absence of errors."""
    inc = _load("include__valid", fake_boards).spec
    assert [z.id for z in inc.cameras[0].zones] == ["pit", "lane"]
    assert [type(s).__name__ for s in inc.alerts.sinks] == ["FileSink", "AlarmSink"]
    assert inc.alerts.sinks[1].hold_s == 2

    env = _load("env__valid", fake_boards).spec
    assert env.alerts.sinks[0].token == "token-from-env"
    assert env.alerts.sinks[1].password == "dev-password"

    secret = _load("secret__valid", fake_boards)
    assert secret.spec.alerts.sinks[0].token == "example-vms-token"
    assert len(secret.warnings) == 2 and all("secrets.example.yaml" in str(w) for w in secret.warnings)

    merged = _load("merge__valid", fake_boards).spec
    pit, pit2 = merged.cameras[0].zones
    assert (pit2.id, pit2.kind, pit2.polygon, pit2.severity) == ("pit-2", "danger", pit.polygon, "warning")
    assert [(s.file, s.min_severity) for s in merged.alerts.sinks] == [
        ("events.jsonl", "warning"), ("critical.jsonl", "critical"),
    ]
