"""Cross-field checks, table-driven: each row is a small spec and the errors it must give
(`OK` for none). An expected error is (path, message fragment); the loader must also place it
at a file:line:col. Board profiles are the fixed `fake_boards` (rv1106, rv1126 and hi3516dv300
cannot host the runtime)."""
from __future__ import annotations

import textwrap

import pytest

from compiler.spec import load_spec

OK: list[tuple[str, str]] = []
HEAD = "site: {name: checks}\ndefaults: {board: rk3588, resolution: [640, 360]}\n"
CALIBRATION = """
calibration:
  image:  [[119.3, 302.5], [520.7, 302.5], [449.4, 65.6], [190.6, 65.6]]
  ground: [[-6, 10], [6, 10], [10, 35], [-10, 35]]"""
ZONE = "{id: %s, kind: danger, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}"


def cam(cid: str, extra: str = "", zones: str = "") -> str:
    text = f"  - id: {cid}\n    source: rtsp://10.0.0.1/{cid}\n"
    text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "    ") + "\n" if extra.strip() else ""
    return text + (f"    zones: [{zones}]\n" if zones else "")


def spec(cameras: str, rest: str = "") -> str:
    return HEAD + "cameras:\n" + cameras + textwrap.dedent(rest)


ROWS = [
    # -- unique ids ---------------------------------------------------------------------------
    ("ok-minimal", spec(cam("a")), OK),
    ("duplicate-camera-id", spec(cam("a") + cam("a")), [("cameras[1].id", "camera id 'a' is used twice")]),
    ("device-id-is-a-camera-id", spec(cam("a", "edge: a"), "devices: [{id: a}]\n"),
     [("devices[0].id", "id 'a' is already a camera or device")]),
    ("duplicate-zone-id-across-cameras", spec(cam("a", zones=ZONE % "z") + cam("b", zones=ZONE % "z")),
     [("cameras[1].zones[0].id", "zone id 'z' is used twice; zone ids are site-wide")]),
    ("duplicate-situation-id", spec(cam("a"), """\
        situations:
          - {id: night, when: {flag: dark}, models: {prefer: speed}}
          - {id: night, when: {flag: rain}, models: {prefer: speed}}
        """), [("situations[1].id", "situation id 'night' is used twice")]),
    # -- references ---------------------------------------------------------------------------
    ("ppe-where-unknown-zone-did-you-mean", spec(cam("a", zones=ZONE % "pit"), "ppe: [{where: [pitt], require: [helmet]}]\n"),
     [("ppe[0].where[0]", "no zone 'pitt'; did you mean 'pit'?")]),
    ("actions-where-unknown-zone-lists-known", spec(cam("a", zones=ZONE % "pit"), "actions: [{where: [roof], detect: [fallen]}]\n"),
     [("actions[0].where[0]", "no zone 'roof' (known: pit)")]),
    ("ppe-where-known-zone", spec(cam("a", zones=ZONE % "pit"), "ppe: [{where: [pit], require: [helmet]}]\n"), OK),
    ("device-tokens-known-devices", spec(cam("gate") + cam("yard"), """\
        alerts:
          sinks:
            - {http: "http://vms.local/api/events", device_tokens: {gate: token-gate-0123456789, yard: token-yard-0123456789}}
        """), OK),
    ("device-tokens-unknown-device", spec(cam("gate"), """\
        alerts:
          sinks:
            - {http: "http://vms.local/api/events", token: t, device_tokens: {gaet: token-gate-0123456789}}
        """), [("alerts.sinks[0].device_tokens.gaet", "no device 'gaet'; did you mean 'gate'?")]),
    ("rule-unknown-camera", spec(cam("gate"), "health: [{cameras: [gatee]}]\nppe: [{require: [vest], cameras: [yard]}]\n"),
     [("health[0].cameras[0]", "no camera 'gatee'; did you mean 'gate'?"), ("ppe[0].cameras[0]", "no camera 'yard' (known: gate)")]),
    ("situation-unknown-camera", spec(cam("gate"), "situations: [{id: s, when: {flag: f}, models: {prefer: speed}, cameras: [gat]}]\n"),
     [("situations[0].cameras[0]", "no camera 'gat'; did you mean 'gate'?")]),
    ("edge-names-undeclared-device", spec(cam("a", "board: rv1106\nedge: edgebox"), "devices: [{id: edge-box}]\n"),
     [("cameras[0].edge", "no device 'edgebox'; did you mean 'edge-box'?; declare it under `devices:`")]),
    # -- calibration needs ----------------------------------------------------------------------
    ("ground-zone-without-calibration",
     spec(cam("a", zones="{id: z, kind: danger, ground: [[0, 0], [5, 0], [5, 5]]}")),
     [("cameras[0].zones[0].ground", "`ground` zones are in metres and need the camera's `calibration`")]),
    ("around-zone-without-calibration",
     spec(cam("a", zones="{id: z, kind: danger, around: {radius_m: 4}}")),
     [("cameras[0].zones[0].around", "`around` zones are in metres and need the camera's `calibration`")]),
    ("predict-entry-without-calibration",
     spec(cam("a", zones="{id: z, kind: danger, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]], predict_entry: {}}")),
     [("cameras[0].zones[0].predict_entry", "predicted entry forecasts paths in metres and needs the camera's `calibration`")]),
    ("ground-zone-with-calibration",
     spec(cam("a", CALIBRATION, zones="{id: z, kind: danger, ground: [[0, 12], [5, 12], [5, 20]], predict_entry: {}}")), OK),
    # -- degenerate calibrations (the model rejects them) ---------------------------------------
    ("calibration-collinear", spec(cam("a", CALIBRATION.replace("[449.4, 65.6], [190.6, 65.6]", "[300, 302.5], [400, 302.5]"))),
     [("cameras[0].calibration", "the image points are (nearly) collinear")]),
    ("calibration-collinear-ground", spec(cam("a", CALIBRATION.replace("[10, 35], [-10, 35]", "[0, 10], [3, 10]"))),
     [("cameras[0].calibration", "the ground points are (nearly) collinear")]),
    ("calibration-too-few-pairs", spec(cam("a", CALIBRATION.replace(", [190.6, 65.6]", "").replace(", [-10, 35]", ""))),
     [("cameras[0].calibration", "3 point pairs; a calibration needs at least 4")]),
    ("calibration-mismatched-counts", spec(cam("a", CALIBRATION.replace(", [-10, 35]", ""))),
     [("cameras[0].calibration", "4 image points but 3 ground points; give them in pairs")]),
    ("calibration-swapped-order-folds", spec(cam("a", CALIBRATION.replace("[[-6, 10], [6, 10]", "[[6, 10], [-6, 10]"))),
     [("cameras[0].calibration", "the ground points fold over the horizon")]),
    ("calibration-point-outside-frame", spec(cam("a", CALIBRATION.replace("[520.7, 302.5]", "[1520.7, 302.5]"))),
     [("cameras[0].calibration.image[1]", "point [1520.7, 302.5] lies outside the 640x360 frame")]),
    ("calibration-point-inside-camera-resolution",
     spec(cam("a", "resolution: [1920, 1080]" + CALIBRATION.replace("[520.7, 302.5]", "[1520.7, 302.5]"))), OK),
    # -- boards and edge devices ---------------------------------------------------------------
    ("rv1106-camera-without-edge", spec(cam("a", "board: rv1106")),
     [("cameras[0].board", "board 'rv1106' cannot host the runtime; name an edge device")]),
    ("rv1106-default-board-without-edge", spec(cam("a")).replace("board: rk3588", "board: rv1106"),
     [("cameras[0].board", "board 'rv1106' cannot host the runtime")]),
    ("rv1106-camera-with-edge", spec(cam("a", "board: rv1106\nedge: box"), "devices: [{id: box}]\n"), OK),
    ("rv1106-camera-listed-by-device", spec(cam("a", "board: rv1106"), "devices: [{id: box, cameras: [a]}]\n"), OK),
    ("edge-device-cannot-host-runtime", spec(cam("a", "board: rv1106\nedge: box"), "devices: [{id: box, board: rv1126}]\n"),
     [("devices[0].board", "board 'rv1126' cannot host the runtime, so it cannot serve cameras")]),
    ("camera-names-one-device-listed-by-another",
     spec(cam("a", "edge: box-b"), "devices: [{id: box-a, cameras: [a]}, {id: box-b}]\n"),
     [("cameras[0].edge", "camera names edge device 'box-b' but device 'box-a' lists it")]),
    ("camera-listed-by-two-devices", spec(cam("a"), "devices: [{id: box-a, cameras: [a]}, {id: box-b, cameras: [a]}]\n"),
     [("devices[1].cameras[0]", "camera 'a' is already served by device 'box-a'")]),
    ("device-lists-unknown-camera", spec(cam("gate"), "devices: [{id: box, cameras: [gaet]}]\n"),
     [("devices[0].cameras[0]", "no camera 'gaet'; did you mean 'gate'?")]),
    ("plain-camera-without-edge", spec(cam("a", "board: none")),
     [("cameras[0].board", "a plain camera (`board: none`) needs an edge device")]),
    ("plain-camera-with-edge", spec(cam("a", "board: none\nedge: box"), "devices: [{id: box}]\n"), OK),
    ("unknown-camera-board-did-you-mean", spec(cam("a", "board: rk3858")),
     [("cameras[0].board", "no board 'rk3858'; did you mean 'rk3588'? (or `none` for a plain camera)")]),
    ("unknown-default-and-device-board", spec(cam("a", "edge: box"), "devices: [{id: box, board: jetson-nano}]\n")
     .replace("board: rk3588", "board: rk-3588"),
     [("defaults.board", "no board 'rk-3588'; did you mean 'rk3588'?"),
      ("devices[0].board", "no board 'jetson-nano'; did you mean 'jetson-orin-nano'?")]),
    # -- files -----------------------------------------------------------------------------------
    ("file-source-missing", spec(cam("a").replace("rtsp://10.0.0.1/a", "file:footage/missing.mp4")),
     [("cameras[0].source", "footage/missing.mp4 (file: paths are relative to the spec's folder)")]),
    ("file-source-present", spec(cam("a").replace("rtsp://10.0.0.1/a", "file:footage/clip.mp4")), OK),
    ("custom-onnx-missing", spec(cam("a"), "models: {detector: {custom: {onnx: mine.onnx, decoder: yolov8, classes: {0: person}}}}\n"),
     [("models.detector.custom.onnx", "mine.onnx (relative to the spec's folder)")]),
    ("custom-onnx-present", spec(cam("a"), "models: {detector: {custom: {onnx: footage/det.onnx, decoder: yolov8, classes: {0: person}}}}\n"), OK),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in ROWS])
def test_cross_field_check(text, expected, tmp_path, fake_boards):
    (tmp_path / "footage").mkdir()
    (tmp_path / "footage" / "clip.mp4").write_bytes(b"\x00")
    (tmp_path / "footage" / "det.onnx").write_bytes(b"\x00")
    (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
    result = load_spec(tmp_path / "spec.yaml", boards=fake_boards)
    got = [(e.path, e.message) for e in result.errors]
    assert len(got) == len(expected), result.report() or "no errors"
    for (path, fragment), (got_path, message) in zip(sorted(expected), sorted(got)):
        assert (got_path, fragment in message) == (path, True), f"{got_path}: {message}"
    for e in result.errors:
        assert e.mark is not None and e.mark.line >= 1 and e.mark.col >= 1, str(e)
    assert result.ok == (not expected)


def test_check_errors_point_at_the_offending_line(tmp_path, fake_boards):
    text = spec(cam("a", zones=ZONE % "pit"), "ppe:\n  - where: [pit, pitt]\n    require: [helmet]\n")
    (tmp_path / "spec.yaml").write_text(text)
    result = load_spec(tmp_path / "spec.yaml", boards=fake_boards)
    (error,) = result.errors
    line = text.splitlines()[error.mark.line - 1]
    assert line[error.mark.col - 1:].startswith("pitt"), (line, error.mark)


def test_boards_are_not_checked_without_profiles(tmp_path):
    (tmp_path / "spec.yaml").write_text(spec(cam("a", "board: not-a-board")))
    assert load_spec(tmp_path / "spec.yaml", boards=None, check_boards=False).ok
