"""Camera health: blocked, defocused, moved, too dark or silent cameras raise their own events, so
that "no detections" never silently means "safe".

    mon = HealthMonitor("crane-north", config.health, fps=10)
    for change in mon.update(frame, t):        # frame: Frame / image, or None when nothing came
        outbox.add(change.to_event(site, device, clock_offset))
    mon.calibration_valid                      # False while "moved" is raised

Each call measures a small grey copy of the frame (320 px wide): mean luma, the share of uniform
tiles, a normalised sharpness, and every `moved_every_s` an ORB match against the reference view.
A check's fault must hold for its rule's ``after_s`` before it is raised (once per episode); it
clears after it has been absent for ``clear_s`` and, where it has a value, past a second, easier
threshold (hysteresis both in time and in value). Baselines (sharpness, uniform share, the
reference view) are learned from the first ``learn_s`` seconds of usable frames.

The checks are ordered: a frame judged too dark says nothing about blocking, focus or the view; a
blocked frame says nothing about focus or the view; a defocused one nothing about the view. Such
frames leave those checks where they were (neither raising nor clearing them). So a bag over the
lens reads as too_dark, tape or a hand as blocked; a knocked camera in the dark stays "moved".

Thresholds (defaults of :class:`HealthThresholds`; measured on the `sim` scenes, see
``bench/health.py`` and ``bench/results/health.json``):

``dark_luma`` 25 / clear 35 (mean luma, 0-255)
    A lights-out dusk frame measures ~8.5; a normal dusk frame ~66; the night-rain scene under
    floodlights ~69 and a clear night with floodlights well above 25. Below ~25 on an 8-bit sensor
    there is too little signal over noise for the detector (its recall collapses long before 0),
    while a floodlit or IR-lit night scene stays above 30: night is not "too dark" by itself.
``uniform_tile_std`` 2.0 on a 5x5-tile grid of an 80 px wide grey image
    At that scale sensor noise averages out (sigma 14 at full size becomes ~1.5), so a tile below
    2 grey levels of spread is flat surface, not texture. A blocked lens (a hand, tape, a bag, mud)
    covers most tiles: 0.8+ of them against 0.25-0.35 on an open construction view.
``blocked_share`` 0.6 / clear 0.45, and at least ``blocked_over_baseline`` 0.25 above the camera's own
    learned share, so a camera that legitimately looks at a bare wall or sky does not count as blocked.
``defocus_ratio`` 0.5 / clear 0.65 of the learned sharpness
    Sharpness is var(Laplacian) / var(image) on the 320 px image: dividing by the image variance
    makes it independent of exposure, lighting and haze (a gain or a veil scales both), so dusk,
    night and fog do not look like defocus. The sim's defocus measures <= 0.28 of the baseline;
    fault-free frames (workers and machines moving, rain, wind shake, compression) stay >= 0.85.
    0.5 sits about halfway between them on a log scale.
``moved_shift`` 2 % of the image diagonal, ``moved_rotation_deg`` 1.0, ``moved_scale`` 4 %
    Zone polygons and the ground homography are in pixels; a 2 % shift (~30 px at 1280x720) moves
    a zone edge ~0.5 m at 20 m range, the tolerance of zone rules. Wind shake in the sim moves
    the view < 0.5 %. When the view no longer matches the reference at all (fewer than
    ``moved_min_inliers`` RANSAC inliers while the frame has texture) it counts as moved too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

CHECKS = ("blocked", "defocused", "moved", "too_dark", "silent")
WORK_WIDTH = 320  # the grey working image; ~0.1-0.3 ms to make from 1280x720
TILE_WIDTH = 80  # the uniformity image (tiles of TILE x TILE px)
TILE = 5


@dataclass(frozen=True)
class HealthThresholds:
    """Every number the checks use; the module docstring says where each comes from."""

    dark_luma: float = 25.0
    dark_luma_clear: float = 35.0
    uniform_tile_std: float = 2.0
    blocked_share: float = 0.6
    blocked_share_clear: float = 0.45
    blocked_over_baseline: float = 0.25
    defocus_ratio: float = 0.5
    defocus_ratio_clear: float = 0.65
    moved_shift: float = 0.02  # of the image diagonal
    moved_rotation_deg: float = 1.0
    moved_scale: float = 0.04
    moved_min_inliers: int = 12
    moved_min_keypoints: int = 40  # fewer in the frame: too little texture to judge the view
    moved_every_s: float = 0.5  # ORB matching cadence (the other checks run on every update)
    learn_s: float = 2.0  # baselines from the first seconds of usable frames
    clear_s: float = 2.0  # a fault must be gone this long before it clears
    baseline_tau_s: float = 600.0  # the sharpness / uniform baselines follow slow change (lighting over the day)


@dataclass(frozen=True)
class HealthChange:
    """A check raised or cleared: the pipeline turns it into a ``camera_health`` event."""

    camera: str
    check: str  # one of CHECKS
    state: str  # raised | cleared
    t: float  # when the change was decided (the caller's clock)
    t_start: float  # when this episode's fault began (the caller's clock)
    value: float | None  # the measured value (None where there is none, e.g. no match for "moved")
    threshold: float
    severity: str
    details: dict[str, Any] = field(default_factory=dict)

    def event_details(self) -> dict[str, Any]:
        return {"check": self.check, "state": self.state, "value": self.value, "threshold": self.threshold,
                **self.details}

    def to_event(self, site: str, device: str, clock_offset: float = 0.0):
        """The Event for this change; `clock_offset` turns the caller's clock into epoch seconds
        (``time.time() - time.monotonic()`` for a monotonic clock). A clear is its own event (info)."""
        from .events import Event

        rule = f"camera_health:{self.check}" + (":cleared" if self.state == "cleared" else "")
        return Event.create(type="camera_health", site=site, device=device, camera=self.camera,
                            t_start=self.t_start + clock_offset, t_event=self.t + clock_offset,
                            severity=self.severity if self.state == "raised" else "info", rule=rule,
                            details=self.event_details())


@dataclass
class Measures:
    """What one update measured; None where a check could not judge the frame."""

    luma: float
    uniform_share: float
    sharpness: float
    sharpness_ratio: float | None = None
    shift_px: float | None = None  # at the frame's own resolution
    rotation_deg: float | None = None
    scale: float | None = None
    inliers: int | None = None
    keypoints: int | None = None


@dataclass
class _Check:
    name: str
    after_s: float
    severity: str
    state: str = "ok"  # ok | pending | raised | clearing
    since: float = 0.0  # when the current state began
    t_start: float = 0.0  # episode start (raised)


def _grey_work(image: np.ndarray) -> np.ndarray:
    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = g.shape[:2]
    wh = (WORK_WIDTH, max(TILE * 4, int(round(h * WORK_WIDTH / w))))
    return cv2.resize(g, wh, interpolation=cv2.INTER_AREA) if (w, h) != wh else g


def measure(grey: np.ndarray, th: HealthThresholds) -> Measures:
    """The cheap per-frame measures of a 320 px grey image."""
    luma = float(grey.mean())
    small = cv2.resize(grey, (TILE_WIDTH, max(TILE, int(round(grey.shape[0] * TILE_WIDTH / grey.shape[1])))),
                       interpolation=cv2.INTER_AREA)
    rows, cols = small.shape[0] // TILE, small.shape[1] // TILE
    tiles = small[:rows * TILE, :cols * TILE].reshape(rows, TILE, cols, TILE).astype(np.float32)
    std = tiles.std(axis=(1, 3))
    uniform = float((std < th.uniform_tile_std).mean())
    var = float(grey.var())
    lap = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    sharp = lap / max(var, 1.0)
    return Measures(luma, uniform, sharp)


class _View:
    """The reference view (ORB keypoints) and the match of a frame against it."""

    def __init__(self, grey: np.ndarray) -> None:
        self.orb = cv2.ORB_create(nfeatures=500, fastThreshold=10)
        self.kp, self.des = self.orb.detectAndCompute(grey, None)
        self.size = grey.shape[1], grey.shape[0]
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    @property
    def usable(self) -> bool:
        return self.des is not None and len(self.kp) >= 40

    def match(self, grey: np.ndarray) -> tuple[int, int, np.ndarray | None]:
        """(keypoints in the frame, RANSAC inliers, 2x3 similarity frame <- reference or None)."""
        kp, des = self.orb.detectAndCompute(grey, None)
        if des is None or self.des is None:
            return len(kp), 0, None
        matches = self.matcher.match(self.des, des)
        if len(matches) < 4:
            return len(kp), 0, None
        src = np.float32([self.kp[m.queryIdx].pt for m in matches])
        dst = np.float32([kp[m.trainIdx].pt for m in matches])
        M, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                             maxIters=500, confidence=0.99)
        return len(kp), int(inl.sum()) if inl is not None else 0, M


class HealthMonitor:
    """Watches one camera. `update` every frame (or every few); None when the source gave nothing."""

    def __init__(self, camera_id: str, rules: list | tuple = (), fps: float = 10.0,
                 thresholds: HealthThresholds | None = None) -> None:
        self.camera = camera_id
        self.fps = float(fps) if fps else 10.0
        self.th = thresholds or HealthThresholds()
        self.checks: dict[str, _Check] = {}
        for rule in rules:
            if rule.cameras and camera_id not in rule.cameras:
                continue
            for name in rule.checks:
                if name not in CHECKS:
                    raise ValueError(f"health check {name!r} is not one of {', '.join(CHECKS)}")
                # several rules naming one check: the first keeps it (the compiler warns about overlap)
                self.checks.setdefault(name, _Check(name, float(rule.after_s), rule.severity))
        self.last: Measures | None = None  # the last frame's measures
        self.observed: dict[str, bool | None] = {}  # the last frame's per-check verdict (before persistence)
        self.rebaseline()
        self._t_first: float | None = None
        self._last_frame_t: float | None = None

    # -- public ---------------------------------------------------------------------------------
    def rebaseline(self) -> None:
        """Forget the learned baselines and reference view (after a deliberate re-aim or refocus)."""
        self._learn_t0: float | None = None
        self._learn: list[Measures] = []
        self._learn_grey: np.ndarray | None = None
        self.base_sharp: float | None = None
        self.base_uniform: float | None = None
        self._base_t: float | None = None
        self._view: _View | None = None
        self._next_match = -math.inf
        self._moved_obs: bool | None = None
        self._moved_info: dict[str, Any] = {}

    @property
    def learning(self) -> bool:
        return self.base_sharp is None

    @property
    def raised(self) -> list[str]:
        return [c.name for c in self.checks.values() if c.state in ("raised", "clearing")]

    @property
    def calibration_valid(self) -> bool:
        """False while the view has moved: pixel zones and the ground homography no longer hold."""
        c = self.checks.get("moved")
        return c is None or c.state not in ("raised", "clearing")

    def status(self) -> dict[str, Any]:
        """Per check: state (ok | pending | raised | clearing | learning) for a health endpoint."""
        out = {}
        for name, c in self.checks.items():
            state = c.state
            if state == "ok" and self.learning and name in ("defocused", "moved"):
                state = "learning"
            out[name] = state
        return out

    def update(self, frame: Any = None, t: float | None = None) -> list[HealthChange]:
        """Feed one frame (a Frame, anything with `.image`, or a BGR/grey array) or None when no frame
        came; `t` is the caller's clock in seconds (default: the frame's own `t`). Returns the changes."""
        image = getattr(frame, "image", frame)
        if t is None:
            t = getattr(frame, "t", None)
            if t is None:
                raise ValueError("update: pass t (seconds) when the frame has no timestamp")
        t = float(t)
        if self._t_first is None:
            self._t_first = t
        changes: list[HealthChange] = []
        if image is None or not isinstance(image, np.ndarray) or image.size == 0:
            self._silence(t, changes)
            return changes
        gap = None if self._last_frame_t is None else t - self._last_frame_t
        self._silence(t, changes, gap=gap, frame=True)
        self._last_frame_t = t
        obs = self._observe(image, t)
        self.observed = {name: o[0] for name, o in obs.items()}
        for name, (bad, value, threshold, details) in obs.items():
            c = self.checks.get(name)
            if c is not None:
                self._step(c, bad, t, value, threshold, details, changes)
        return changes

    # -- checks ---------------------------------------------------------------------------------
    def _observe(self, image: np.ndarray, t: float) -> dict[str, tuple]:
        th = self.th
        grey = _grey_work(image)
        m = measure(grey, th)
        self.last = m
        raised = {n for n, c in self.checks.items() if c.state in ("raised", "clearing", "pending")}
        obs: dict[str, tuple] = {}

        # too dark: a state-dependent threshold gives hysteresis in value
        limit = th.dark_luma_clear if "too_dark" in raised else th.dark_luma
        dark = m.luma < limit
        obs["too_dark"] = (dark, round(m.luma, 2), th.dark_luma, {})
        unjudgeable = dark  # too dim to say anything about the lens, the focus or the view

        # blocked: most of the frame flat, and clearly flatter than this camera's own view
        share_limit = th.blocked_share_clear if "blocked" in raised else th.blocked_share
        blocked = m.uniform_share >= share_limit
        if blocked and self.base_uniform is not None:
            blocked = m.uniform_share - self.base_uniform >= th.blocked_over_baseline
        obs["blocked"] = (None if unjudgeable else blocked, round(m.uniform_share, 3), th.blocked_share,
                          {"baseline": None if self.base_uniform is None else round(self.base_uniform, 3)})

        # learning the baselines from usable frames (a view that is mostly flat from boot counts as
        # blocked: there is nothing in it to watch)
        usable = not unjudgeable and not blocked
        if self.learning:
            if usable:
                if self._learn_t0 is None:
                    self._learn_t0 = t
                self._learn.append(m)
                self._learn_grey = grey
                if t - self._learn_t0 + 1.0 / self.fps >= th.learn_s and len(self._learn) >= 3:
                    self.base_sharp = float(np.median([x.sharpness for x in self._learn]))
                    self.base_uniform = float(np.median([x.uniform_share for x in self._learn]))
                    self._base_t = t
                    view = _View(self._learn_grey)
                    self._view = view if view.usable else None
                    self._learn = []
            obs["defocused"] = (None, None, th.defocus_ratio, {})
            obs["moved"] = (None, None, round(th.moved_shift * math.hypot(image.shape[1], image.shape[0]), 1), {})
            return obs

        # defocused: sharpness against the learned baseline
        ratio = m.sharpness / max(self.base_sharp, 1e-9)
        m.sharpness_ratio = ratio
        r_limit = th.defocus_ratio_clear if "defocused" in raised else th.defocus_ratio
        defocused = ratio < r_limit
        obs["defocused"] = (None if unjudgeable or blocked else defocused, round(ratio, 3), th.defocus_ratio, {})

        # moved: ORB against the reference view, every moved_every_s
        judge_view = not (unjudgeable or blocked or defocused)
        if "moved" in self.checks and self._view is not None and judge_view and t >= self._next_match:
            self._next_match = t + th.moved_every_s
            self._moved_obs, self._moved_info = self._match(grey, image, m)
        elif not judge_view:
            self._moved_obs, self._moved_info = None, {}
        obs["moved"] = (self._moved_obs if judge_view else None, self._moved_info.get("shift_px"),
                        round(th.moved_shift * math.hypot(image.shape[1], image.shape[0]), 1),
                        {k: v for k, v in self._moved_info.items() if k != "shift_px"})

        # slow baseline drift (lighting over the day) from frames where nothing is wrong
        if usable and not defocused and self._moved_obs is not True and not raised and self._base_t is not None:
            a = min(1.0, max(0.0, t - self._base_t) / th.baseline_tau_s)
            self.base_sharp += a * (m.sharpness - self.base_sharp)
            self.base_uniform += a * (m.uniform_share - self.base_uniform)
        self._base_t = t
        return obs

    def _match(self, grey: np.ndarray, image: np.ndarray, m: Measures) -> tuple[bool | None, dict[str, Any]]:
        th, view = self.th, self._view
        try:
            n_kp, inliers, M = view.match(grey)
        except cv2.error:
            return None, {}
        m.keypoints, m.inliers = n_kp, inliers
        if n_kp < th.moved_min_keypoints:
            return None, {"keypoints": n_kp}  # too little texture to judge
        if M is None or inliers < th.moved_min_inliers:
            return True, {"shift_px": None, "inliers": inliers, "keypoints": n_kp, "matched": False}
        k = image.shape[1] / grey.shape[1]  # back to the frame's own pixels
        cx, cy = grey.shape[1] / 2, grey.shape[0] / 2
        dx = M[0, 0] * cx + M[0, 1] * cy + M[0, 2] - cx
        dy = M[1, 0] * cx + M[1, 1] * cy + M[1, 2] - cy
        shift = math.hypot(dx, dy) * k
        rot = math.degrees(math.atan2(M[1, 0], M[0, 0]))
        scale = math.hypot(M[0, 0], M[1, 0])
        m.shift_px, m.rotation_deg, m.scale = shift, rot, scale
        diag = math.hypot(image.shape[1], image.shape[0])
        moved = shift > th.moved_shift * diag or abs(rot) > th.moved_rotation_deg or abs(scale - 1) > th.moved_scale
        return moved, {"shift_px": round(shift, 1), "rotation_deg": round(rot, 2), "scale": round(scale, 3),
                       "inliers": inliers, "keypoints": n_kp, "matched": True}

    def _silence(self, t: float, changes: list[HealthChange], gap: float | None = None, frame: bool = False) -> None:
        c = self.checks.get("silent")
        if c is None:
            return
        last = self._last_frame_t if self._last_frame_t is not None else self._t_first
        silent_for = t - last
        if frame:
            if gap is not None and gap >= c.after_s and c.state not in ("raised", "clearing"):
                self._raise(c, last, t, gap, changes)  # a gap noticed only when the next frame came
            self._step(c, False, t, 0.0, c.after_s, {}, changes)
        elif silent_for >= c.after_s:
            if c.state not in ("raised", "clearing"):
                self._raise(c, last, t, silent_for, changes)
            else:
                c.state, c.since = "raised", t

    # -- persistence ----------------------------------------------------------------------------
    def _raise(self, c: _Check, t_start: float, t: float, value, changes: list[HealthChange],
               threshold: float | None = None, details: dict | None = None) -> None:
        c.state, c.since, c.t_start = "raised", t, t_start
        changes.append(HealthChange(self.camera, c.name, "raised", t, t_start, _num(value),
                                    c.after_s if threshold is None else threshold, c.severity, dict(details or {})))

    def _step(self, c: _Check, bad: bool | None, t: float, value, threshold, details, changes) -> None:
        if bad is None:
            return
        if bad:
            if c.state == "ok":
                c.state, c.since = "pending", t
            elif c.state == "clearing":
                c.state, c.since = "raised", t
            if c.state == "pending" and t - c.since >= c.after_s:
                self._raise(c, c.since, t, value, changes, threshold, details)
        else:
            if c.state == "pending":
                c.state, c.since = "ok", t
            elif c.state == "raised":
                c.state, c.since = "clearing", t
            if c.state == "clearing" and t - c.since >= self.th.clear_s:
                c.state, c.since = "ok", t
                changes.append(HealthChange(self.camera, c.name, "cleared", t, c.t_start, _num(value),
                                            threshold, c.severity, dict(details or {})))


def _num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None
