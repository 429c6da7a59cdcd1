"""Named scenes: camera, site layout, zones, machines, the worker population and conditions.

crane-swing's camera is fixed (the demo site spec's calibration is computed from it): at
(0, 0, 10) m looking along +Y, pitched down 30 degrees, 70 degrees horizontal FOV, 640x360.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .camera import Camera
from .conditions import NAMED, Condition, Fault
from .machines import MachineSpec
from .structures import StructureSpec


class UnknownScene(KeyError):
    def __init__(self, name: str):
        self.name = name
        close = difflib.get_close_matches(name, list(SCENES), n=1)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"unknown scene {name!r}{hint} (scenes: {', '.join(SCENES)})")

    def __str__(self):
        return self.args[0]


@dataclass(frozen=True)
class ZoneSpec:
    id: str
    kind: str = "danger"                  # danger | restricted | walkway | work
    polygon: tuple | None = None          # ground metres (static zones)
    follow: str | None = None             # machine subtype the zone follows (radius zones)
    radius_m: float = 0.0
    painted: bool = True
    predict_entry: bool = True

    def to_dict(self) -> dict:
        d = {"id": self.id, "kind": self.kind, "predict_entry": self.predict_entry}
        if self.polygon is not None:
            d["ground"] = [list(map(float, p)) for p in self.polygon]
        if self.follow:
            d["follow"] = {"class": "machine", "subtype": self.follow}
            d["radius_m"] = self.radius_m
        return d


@dataclass(frozen=True)
class SceneSpec:
    name: str
    description: str
    camera: Camera
    condition: Condition = field(default_factory=Condition)
    zones: tuple = ()
    structures: tuple = ()
    machines: tuple = ()
    roles: dict = field(default_factory=dict)      # role -> count; "group" -> list of group sizes
    ppe: dict = field(default_factory=lambda: {"p_helmet": 0.8, "p_vest": 0.75, "p_lookalike": 0.15})
    slabs: tuple = ()
    roads: tuple = ()
    paint: tuple = ()
    lights: tuple = ()                  # floodlights: (x, y, reach m, strength)
    faults: tuple = ()
    knock: tuple = (14.0, -7.0, 5.0)    # yaw, pitch, roll change when the camera is knocked
    duration_s: float = 10.0
    max_range_m: float = 42.0
    fall_at_s: float = 4.0

    @property
    def resolution(self) -> tuple[int, int]:
        return self.camera.width, self.camera.height


CRANE_CAMERA = Camera(position=(0.0, 0.0, 10.0), yaw_deg=0.0, pitch_deg=30.0, roll_deg=0.0, hfov_deg=70.0, width=640, height=360)
CRANE_ZONE = ((-4.0, 16.0), (5.0, 16.0), (5.0, 25.0), (-4.0, 25.0))
MAST = (-7.5, 20.5)

_SITE = dict(
    structures=(
        StructureSpec("mast", MAST),
        StructureSpec("container", (-9.5, 12.5), 0.0),
        StructureSpec("stack", (7.5, 13.0), 0.0, params={"n": 3}),
        StructureSpec("rebar", (-1.0, 31.0), 90.0),
        StructureSpec("office", (-15.0, 30.0), 0.0),
        StructureSpec("barrier", (7.0, 20.5), 0.0, size=(8.0,)),
        StructureSpec("container", (19.0, 20.0), 0.0, params={"stacked": True}),
        StructureSpec("hoarding", (0.0, 48.0), 90.0, size=(80.0,)),
        StructureSpec("building", (6.0, 62.0), 0.0, params={"bays": (5, 2), "floors": 4}),
    ),
    slabs=(((-6.0, 15.0), (7.0, 15.0), (7.0, 27.0), (-6.0, 27.0)),),
    roads=({"centre": ((-70.0, 42.0), (70.0, 42.0)), "width": 7.0},),
    paint=(
        {"polyline": ((-5.6, 5.0), (-5.6, 14.5)), "colour": "green", "width": 0.12},
        {"polyline": ((-4.4, 5.0), (-4.4, 14.5)), "colour": "green", "width": 0.12},
        {"polyline": ((-18.0, 38.0), (18.0, 38.0)), "colour": "white", "width": 0.15, "dash": 1.5},
    ),
    zones=(
        ZoneSpec("crane-swing", "danger", polygon=CRANE_ZONE),
        ZoneSpec("excavator-radius", "danger", follow="excavator", radius_m=5.0, painted=False),
    ),
    machines=(
        MachineSpec("excavator", [(10.0, 25.0), (11.5, 29.5)], speed=0.4, pause_s=8.0),
        MachineSpec("truck", [(-45.0, 41.0), (45.0, 41.0)], speed=5.0, pause_s=6.0, params={"colour": (235, 235, 235)}),
        MachineSpec("crane_load", [], params={"mast": MAST, "radius": 10.5, "angle": 0.0, "swing": 0.45, "height": 4.6}),
    ),
    lights=((-5.0, 19.0, 6.0, 1.5), (9.0, 27.0, 5.5, 1.3), (1.0, 11.0, 4.0, 0.9), (-13.0, 31.0, 5.0, 1.2)),
)

SCENES: dict[str, SceneSpec] = {}


def _add(spec: SceneSpec) -> None:
    SCENES[spec.name] = spec


_add(SceneSpec(
    name="crane-swing", description="Day; workers enter the crane's swing area and turn away just short of it; an excavator slews and drives.",
    camera=CRANE_CAMERA, condition=NAMED["day"], roles={"enter": 3, "near_miss": 3, "wander": 1, "work": 1, "group": [2]},
    duration_s=20.0, **_SITE,
))
_add(SceneSpec(
    name="night-rain", description="The crane-swing site at night in wind-driven rain under floodlights.",
    camera=CRANE_CAMERA, condition=NAMED["night-rain"], roles={"enter": 2, "near_miss": 3, "wander": 2, "work": 1},
    ppe={"p_helmet": 0.8, "p_vest": 0.8, "p_lookalike": 0.15}, duration_s=15.0, **_SITE,
))
_add(SceneSpec(
    name="fall-incident", description="A closer camera; one worker falls and lies still while others walk and work nearby.",
    camera=Camera(position=(2.0, 0.0, 6.0), yaw_deg=-4.0, pitch_deg=28.0, hfov_deg=66.0),
    condition=NAMED["day"], roles={"wander": 3, "work": 1, "fall": 1, "group": [2]}, duration_s=12.0, fall_at_s=4.0,
    max_range_m=28.0,
    zones=(ZoneSpec("slab-edge", "danger", polygon=((-4.0, 16.0), (1.0, 16.0), (1.0, 19.0), (-4.0, 19.0))),),
    structures=(
        StructureSpec("stack", (5.5, 11.0), 0.0, params={"n": 2}),
        StructureSpec("rebar", (-4.5, 10.5), 0.0),
        StructureSpec("container", (8.5, 20.0), 0.0),
        StructureSpec("barrier", (-1.5, 20.2), 90.0, size=(6.0,)),
        StructureSpec("hoarding", (0.0, 30.0), 90.0, size=(50.0,)),
        StructureSpec("building", (0.0, 40.0), 0.0, params={"bays": (4, 1), "floors": 3}),
    ),
    slabs=(((-8.0, 6.0), (9.0, 6.0), (9.0, 26.0), (-8.0, 26.0)),),
    paint=({"polyline": ((-6.5, 6.0), (-6.5, 24.0)), "colour": "white", "width": 0.12, "dash": 1.0},),
))
_add(SceneSpec(
    name="ppe-mix", description="Many workers with mixed PPE: helmets or bare heads, caps and hoods, vests or orange/yellow lookalike clothes.",
    camera=Camera(position=(0.0, 0.0, 7.0), yaw_deg=0.0, pitch_deg=33.0, hfov_deg=74.0),
    condition=NAMED["day"], roles={"wander": 14, "work": 3, "group": [2, 3]},
    ppe={"p_helmet": 0.55, "p_vest": 0.5, "p_lookalike": 0.35}, duration_s=10.0, max_range_m=21.0,
    zones=(ZoneSpec("ppe-area", "work", polygon=((-7.0, 9.0), (7.0, 9.0), (7.0, 20.0), (-7.0, 20.0)), painted=False, predict_entry=False),),
    structures=(
        StructureSpec("office", (-9.5, 14.0), 0.0),
        StructureSpec("container", (9.5, 16.0), 0.0),
        StructureSpec("stack", (3.0, 22.0), 90.0, params={"n": 3}),
        StructureSpec("hoarding", (0.0, 30.0), 90.0, size=(50.0,)),
    ),
    slabs=(((-12.0, 5.0), (12.0, 5.0), (12.0, 28.0), (-12.0, 28.0)),),
    paint=({"polyline": ((-2.0, 5.0), (-2.0, 26.0)), "colour": "yellow", "width": 0.1},
           {"polyline": ((2.0, 5.0), (2.0, 26.0)), "colour": "yellow", "width": 0.1}),
))
_add(SceneSpec(
    name="camera-faults", description="The crane-swing camera at dusk: lens blocked, defocus, knocked to a new angle, lights out.",
    camera=CRANE_CAMERA, condition=NAMED["dusk"], roles={"enter": 2, "near_miss": 2, "wander": 2},
    faults=(Fault("blocked", 2.0, 4.0), Fault("defocus", 5.0, 7.0), Fault("knocked", 8.0), Fault("lights_out", 11.0, 13.0)),
    duration_s=14.0, **_SITE,
))


def get_scene(name: str) -> SceneSpec:
    try:
        return SCENES[name]
    except KeyError:
        raise UnknownScene(name) from None
