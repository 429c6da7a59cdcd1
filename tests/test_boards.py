"""Board profiles: all nine load, every number carries a source, bad input fails with file + field."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from compiler.boards import (
    DEFAULT_BOARD_DIR,
    BoardProfile,
    BoardProfileError,
    Figure,
    effective_gops,
    format_board_table,
    get_board_profile,
    load_board_profile,
    load_board_profiles,
    unsourced_numbers,
)

EXPECTED_IDS = {"rk3588", "rk3566", "rv1126", "rv1106", "hi3516dv300", "jetson-orin-nano",
                "hailo8", "coral-edgetpu", "host-cpu"}
NO_RUNTIME = {"rv1106", "rv1126", "hi3516dv300"}


@pytest.fixture(scope="module")
def profiles() -> dict[str, BoardProfile]:
    return load_board_profiles()


def _raw(board_id: str) -> dict:
    return yaml.safe_load((DEFAULT_BOARD_DIR / f"{board_id}.yaml").read_text(encoding="utf-8"))


def _numbers_without_source(node, sourced=False, path="") -> list[str]:
    """Independent re-implementation of the rule, so the test does not trust the code under test."""
    out: list[str] = []
    if isinstance(node, dict):
        src = node.get("source")
        ok = isinstance(src, str) and src.replace("[unverified]", "").strip() != ""
        for k, v in node.items():
            out += _numbers_without_source(v, ok, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _numbers_without_source(v, sourced, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool) and not sourced:
        out.append(path)
    return out


def _write(tmp_path: Path, board_id: str, data) -> Path:
    path = tmp_path / f"{board_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data,
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------- the shipped profiles

def test_all_nine_load(profiles):
    assert set(profiles) == EXPECTED_IDS


def test_ids_match_file_stems(profiles):
    stems = {p.stem for p in DEFAULT_BOARD_DIR.glob("*.yaml")}
    assert stems == EXPECTED_IDS
    for board_id, prof in profiles.items():
        assert prof.id == board_id


@pytest.mark.parametrize("board_id", sorted(EXPECTED_IDS))
def test_every_raw_number_has_a_source(board_id):
    raw = _raw(board_id)
    assert _numbers_without_source(raw) == []
    assert unsourced_numbers(raw) == []


@pytest.mark.parametrize("board_id", sorted(EXPECTED_IDS))
def test_every_parsed_number_has_a_source(profiles, board_id):
    dumped = profiles[board_id].model_dump(mode="python")
    assert _numbers_without_source(dumped) == []


def test_hosts_runtime_false_exactly_for_camera_socs(profiles):
    assert {i for i, p in profiles.items() if not p.hosts_runtime} == NO_RUNTIME
    for board_id, prof in profiles.items():
        if prof.hosts_runtime:
            assert prof.runtime_memory_mb is not None and prof.runtime_threads is not None
            assert prof.cpu.arch in ("aarch64", "x86_64")
        else:
            assert prof.runtime_memory_mb is None and prof.runtime_threads is None


def test_host_cpu_is_this_machine(profiles):
    host = profiles["host-cpu"]
    assert host.npu is None
    assert host.cpu.arch == "x86_64" and host.cpu.cores.value == 2
    assert host.runtime_threads is not None and host.runtime_threads.value == 2
    assert host.cpu.int8_gops is not None and host.cpu.int8_gops.kind == "measured"
    assert "bench/host_cpu_gops.py" in host.cpu.int8_gops.source
    assert (DEFAULT_BOARD_DIR.parent / "bench" / "host_cpu_gops.py").is_file()
    assert effective_gops(host) == host.cpu.int8_gops.value


def test_toolchains(profiles):
    assert {i for i, p in profiles.items() if p.toolchain.installs_here} == \
        {"rk3588", "rk3566", "rv1106", "host-cpu"}
    assert profiles["rv1126"].toolchain.name.startswith("rknn-toolkit (v1)")
    assert profiles["hi3516dv300"].toolchain.model_format == ".wk"
    assert profiles["coral-edgetpu"].toolchain.model_format == "_edgetpu.tflite"


def test_efficiency_is_derived_from_published_fps(profiles):
    """The RK3588 efficiency reproduces from its own published yolov8n row (one core of three)."""
    rk = profiles["rk3588"]
    row = rk.latency("yolov8n", 640, "int8")
    assert row is not None and row.verified
    yolov8n_gops = 8.7
    per_core_peak = rk.npu.int8_tops.value * 1000 / rk.npu.cores.value
    assert rk.npu.efficiency.value == pytest.approx(row.fps * yolov8n_gops / per_core_peak, rel=0.01)
    assert effective_gops(rk, cores=1) == pytest.approx(row.fps * yolov8n_gops, rel=0.01)
    for prof in profiles.values():
        if prof.npu is not None:
            assert prof.npu.efficiency.kind in ("derived", "assumed")
            assert 0 < effective_gops(prof) <= prof.npu.int8_tops.value * 1000


def test_effective_gops_rejects_bad_core_count(profiles):
    with pytest.raises(ValueError):
        effective_gops(profiles["rk3588"], cores=4)


def test_memory_budget_fits(profiles):
    for prof in profiles.values():
        runtime = prof.runtime_memory_mb.value if prof.runtime_memory_mb else 0
        assert prof.model_memory_mb.value + runtime <= prof.ram_mb.value


def test_op_support_lookup(profiles):
    rk = profiles["rk3588"].npu.op_support
    assert rk.runs("NonMaxSuppression") is False and rk.runs("Conv") is True
    assert profiles["coral-edgetpu"].npu.op_support.runs("NonMaxSuppression") is False
    assert profiles["jetson-orin-nano"].npu.op_support.runs("Conv") is None


def test_format_board_table_lists_all(profiles):
    table = format_board_table(profiles)
    for board_id in EXPECTED_IDS:
        assert board_id in table
    header = table.splitlines()[0]
    for col in ("id", "SoC", "CPU", "RAM", "INT8 TOPS", "runtime", "yolov8n fps"):
        assert col in header
    assert "59.6" in table  # RK3588 published yolov8n fps


def test_get_board_profile_unknown_id():
    with pytest.raises(BoardProfileError, match="unknown board 'nope'.*rk3588"):
        get_board_profile("nope")


# ---------------------------------------------------------------- negative cases

def _drop_source(data: dict, dotted: str) -> dict:
    node = data
    for key in dotted.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    del node["source"]
    return data


@pytest.mark.parametrize("board_id,where", [
    ("rk3588", "npu.int8_tops"),
    ("rk3588", "npu.conv.kernel_max"),
    ("host-cpu", "cpu.int8_gops"),
    ("rv1106", "ram_mb"),
    ("hailo8", "published_latencies.0"),
    ("jetson-orin-nano", "runtime_threads"),
])
def test_missing_source_is_rejected(tmp_path, board_id, where):
    data = _drop_source(copy.deepcopy(_raw(board_id)), where)
    path = _write(tmp_path, board_id, data)
    with pytest.raises(BoardProfileError) as exc:
        load_board_profile(path)
    msg = str(exc.value)
    assert f"{tmp_path.name}/{board_id}.yaml" in msg
    assert where.replace(".0", "[0]") in msg
    assert "source" in msg


@pytest.mark.parametrize("bad", ["", "   ", "[unverified]"])
def test_empty_source_is_rejected(tmp_path, bad):
    data = _raw("rk3566")
    data["npu"]["int8_tops"]["source"] = bad
    with pytest.raises(BoardProfileError, match=r"rk3566\.yaml: npu\.int8_tops"):
        load_board_profile(_write(tmp_path, "rk3566", data))


def test_bare_number_is_rejected(tmp_path):
    data = _raw("rk3588")
    data["ram_mb"] = 4096
    with pytest.raises(BoardProfileError, match=r"rk3588\.yaml: ram_mb: number without a source"):
        load_board_profile(_write(tmp_path, "rk3588", data))


def test_missing_field_names_file_and_path(tmp_path):
    data = _raw("rk3588")
    del data["npu"]["int8_tops"]
    with pytest.raises(BoardProfileError, match=r"rk3588\.yaml: npu\.int8_tops: Field required"):
        load_board_profile(_write(tmp_path, "rk3588", data))


def test_unknown_key_names_file(tmp_path):
    data = _raw("rv1126")
    data["npu"]["turbo"] = True
    with pytest.raises(BoardProfileError, match=r"rv1126\.yaml: npu\.turbo: Extra inputs"):
        load_board_profile(_write(tmp_path, "rv1126", data))


@pytest.mark.parametrize("text,fragment", [
    ("id: rk3588\nname: [unclosed\n", "invalid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("id: rk3588\nid: rk3566\n", "duplicate key 'id'"),
])
def test_malformed_yaml(tmp_path, text, fragment):
    path = _write(tmp_path, "rk3588", text)
    with pytest.raises(BoardProfileError) as exc:
        load_board_profile(path)
    assert f"{tmp_path.name}/rk3588.yaml" in str(exc.value) and fragment in str(exc.value)


def test_directory_errors_name_the_file(tmp_path):
    shutil.copy(DEFAULT_BOARD_DIR / "rk3566.yaml", tmp_path / "rk3566.yaml")
    (tmp_path / "broken.yaml").write_text("id: broken\nname: {\n", encoding="utf-8")
    with pytest.raises(BoardProfileError, match=r"broken\.yaml: invalid YAML"):
        load_board_profiles(tmp_path)


def test_id_must_equal_file_stem(tmp_path):
    data = _raw("rk3566")
    with pytest.raises(BoardProfileError, match=r"other\.yaml: id: 'rk3566' must equal the file name 'other'"):
        load_board_profile(_write(tmp_path, "other", data))


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d.pop("runtime_threads"), "hosts_runtime needs runtime_memory_mb and runtime_threads"),
    (lambda d: d["cpu"].update(arch="armv7"), "64-bit CPU"),
    (lambda d: d["npu"]["efficiency"].update(value=1.5), "efficiency must be a fraction"),
    (lambda d: d["model_memory_mb"].update(value=99999), "exceed ram_mb"),
    (lambda d: d["npu"]["cores"].update(value=2.5), "whole number"),
    (lambda d: d["npu"]["int8_tops"].update(value=True), "must be a number"),
])
def test_consistency_rules(tmp_path, mutate, fragment):
    data = _raw("rk3588")
    mutate(data)
    with pytest.raises(BoardProfileError, match=fragment):
        load_board_profile(_write(tmp_path, "rk3588", data))


def test_camera_soc_cannot_claim_runtime_memory(tmp_path):
    data = _raw("rv1106")
    data["runtime_memory_mb"] = {"value": 10, "unit": "MB", "source": "x"}
    with pytest.raises(BoardProfileError, match="only apply when hosts_runtime"):
        load_board_profile(_write(tmp_path, "rv1106", data))


def test_missing_directory():
    with pytest.raises(BoardProfileError, match="not found"):
        load_board_profiles(Path("/nonexistent/board_profiles"))


def test_figure_verified_flag():
    assert Figure(value=1, unit="x", source="doc").verified
    assert not Figure(value=1, unit="x", source="[unverified] doc").verified
