"""Conditions (light, weather, wind, optics) and camera faults, applied to a rendered frame.

Everything expensive is precomputed once per (condition, resolution, seed): light gain maps, fog
alpha maps, rain/snow layers and noise textures; a frame only slices, adds and multiplies them.
Wind is first-class: it sets the rain angle, snow drift, the crane load's sway and camera shake.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

LIGHTS = ("day", "dusk", "night")
WEATHER = ("clear", "rain", "snow", "fog")
FAULTS = ("blocked", "defocus", "knocked", "lights_out")


@dataclass(frozen=True)
class Condition:
    light: str = "day"
    weather: str = "clear"
    wind: float = 0.0            # 0 calm .. 1 gale: camera shake, rain slant, snow drift, load sway
    motion_blur: int = 0         # horizontal blur length in px (0: off)
    jpeg_quality: int = 0        # 0: no compression artefacts
    noise: float = 0.0           # extra sensor noise (std, grey levels); night adds its own

    @property
    def name(self) -> str:
        parts = [self.light]
        if self.weather != "clear":
            parts.append(self.weather)
        if self.wind >= 0.3:
            parts.append("wind")
        if self.motion_blur:
            parts.append("blur")
        if self.jpeg_quality:
            parts.append("jpeg")
        return "+".join(parts)

    @property
    def surface(self) -> str:
        return {"rain": "wet", "snow": "snow"}.get(self.weather, "dry")

    def to_dict(self) -> dict:
        return {"name": self.name, "light": self.light, "weather": self.weather, "wind": self.wind,
                "motion_blur_px": self.motion_blur, "jpeg_quality": self.jpeg_quality, "noise": self.noise}


NAMED = {
    "day": Condition(),
    "dusk": Condition(light="dusk", noise=2.0),
    "night": Condition(light="night", noise=4.0),
    "rain": Condition(weather="rain", wind=0.3),
    "snow": Condition(weather="snow", wind=0.3),
    "fog": Condition(weather="fog"),
    "wind": Condition(wind=0.8),
    "blur": Condition(motion_blur=7),
    "jpeg": Condition(jpeg_quality=12),
    "night-rain": Condition(light="night", weather="rain", wind=0.5, noise=4.0),
}


def parse(text: str) -> Condition:
    """'night+rain+wind' or a named condition; tokens combine left to right."""
    cond = Condition()
    for tok in text.replace(",", "+").split("+"):
        tok = tok.strip()
        if not tok:
            continue
        if tok not in NAMED:
            raise KeyError(tok)
        c = NAMED[tok]
        base = NAMED["day"]
        changes = {k: getattr(c, k) for k in ("light", "weather", "wind", "motion_blur", "jpeg_quality", "noise")
                   if getattr(c, k) != getattr(base, k)}
        if "noise" in changes:
            changes["noise"] = max(changes["noise"], cond.noise)
        if "wind" in changes:
            changes["wind"] = max(changes["wind"], cond.wind)
        cond = replace(cond, **changes)
    return cond


@dataclass(frozen=True)
class Fault:
    kind: str
    start: float
    end: float = math.inf


class Effects:
    """Precomputed layers for one condition at one resolution."""

    def __init__(self, cond: Condition, width: int, height: int, seed: int, ground_depth: np.ndarray,
                 lights_px: list | None = None):
        self.cond, self.w, self.h = cond, width, height
        rng = np.random.default_rng([seed, 4242])
        self.pad = 64
        self.gain = self._gain_map(cond.light, lights_px or [])
        sigma = cond.noise + (2.0 if cond.light == "dusk" else 0.0)
        self.noise = self._noise(rng, max(sigma, 0.0)) if sigma > 0 else None
        self.noise_heavy = self._noise(rng, 14.0)
        self.fog = None
        if cond.weather == "fog" or cond.weather == "rain":
            thick = 45.0 if cond.weather == "fog" else 140.0
            a = 1 - np.exp(-np.minimum(ground_depth, 400.0) / thick)
            a = np.where(np.isinf(ground_depth), 1.0 if cond.weather == "fog" else 0.5, a).astype(np.float32)
            a = cv2.GaussianBlur(a, (0, 0), 2)
            fogcol = np.array([200, 200, 198] if cond.light == "day" else [60, 60, 62], np.float32)
            self.fog_keep = np.dstack([(1 - a) * 255] * 3).astype(np.uint8)
            self.fog = (a[..., None] * fogcol).astype(np.uint8)
        self.rain = self._streaks(rng) if cond.weather == "rain" else None
        self.snow = self._flakes(rng) if cond.weather == "snow" else None
        self.blocked = self._blocked(rng)

    # -- precomputation ---------------------------------------------------------------------
    def _gain_map(self, light, lights_px):
        if light == "day":
            return None
        h, w = self.h, self.w
        if light == "dusk":
            v = np.linspace(0, 1, h, dtype=np.float32)[:, None]
            g = np.broadcast_to(0.55 + 0.1 * v, (h, w))
            tint = np.array([0.85, 0.95, 1.1], np.float32)
            return np.clip(g[..., None] * tint * 255, 0, 255).astype(np.uint8)
        g = np.full((h, w), 0.055, np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for (u, v, r, k) in lights_px:
            g += k * np.exp(-(((xx - u) / (r * 1.6)) ** 2 + ((yy - v) / r) ** 2))
        tint = np.array([0.8, 0.95, 1.15], np.float32)  # sodium-ish floodlights
        return np.clip(g[..., None] * tint * 255, 0, 255).astype(np.uint8)

    def _noise(self, rng, sigma):
        n = rng.normal(0, sigma, (self.h + self.pad, self.w + self.pad, 1)).astype(np.float32)
        n = np.repeat(n, 3, axis=2) + rng.normal(0, sigma * 0.4, (self.h + self.pad, self.w + self.pad, 3))
        return np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)

    def _streaks(self, rng):
        h, w, p = self.h * 2, self.w + self.pad, self.pad
        layer = np.zeros((h, w), np.uint8)
        slant = 0.15 + 0.6 * self.cond.wind
        n = int(w * h / 260)
        x = rng.uniform(0, w, n)
        y = rng.uniform(0, h, n)
        length = rng.uniform(8, 22, n) * self.h / 360
        b = rng.integers(35, 90, n)
        for xi, yi, li, bi in zip(x, y, length, b):
            cv2.line(layer, (int(xi), int(yi)), (int(xi + slant * li), int(yi + li)), int(bi), 1, cv2.LINE_AA)
        return cv2.cvtColor(layer, cv2.COLOR_GRAY2BGR)

    def _flakes(self, rng):
        h, w = self.h * 2, self.w + self.pad
        layer = np.zeros((h, w), np.uint8)
        n = int(w * h / 500)
        for xi, yi, r, b in zip(rng.uniform(0, w, n), rng.uniform(0, h, n), rng.choice([1, 1, 1, 2, 2, 3], n),
                                rng.integers(120, 230, n)):
            cv2.circle(layer, (int(xi), int(yi)), int(r * max(1, self.h // 360)), int(b), -1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (3, 3), 0)
        return cv2.cvtColor(layer, cv2.COLOR_GRAY2BGR)

    def _blocked(self, rng):
        h, w = self.h, self.w
        m = np.zeros((h, w), np.float32)
        cv2.ellipse(m, (int(w * 0.42), int(h * 0.45)), (int(w * 0.55), int(h * 0.62)), 15, 0, 360, 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), w / 25)
        tex = rng.normal(0, 6, (h, w, 1)).astype(np.float32) + np.array([30, 38, 45], np.float32)
        return (np.dstack([(1 - m) * 255] * 3).astype(np.uint8), (m[..., None] * tex).clip(0, 255).astype(np.uint8))

    # -- per frame --------------------------------------------------------------------------
    def scene_light(self, img, t, rng, faults, glow=None):
        """Lighting, fog and precipitation: what the lens sees. `glow` marks retro-reflective
        stripes, which shine back toward a camera with its own illuminator when the site is dark."""
        if "lights_out" in faults:
            img = cv2.multiply(img, np.full_like(img, 10), scale=1 / 255)
            if glow is not None:
                img = cv2.max(img, cv2.cvtColor(cv2.multiply(glow, 0.35), cv2.COLOR_GRAY2BGR))
        elif self.gain is not None:
            img = cv2.multiply(img, self.gain, scale=1 / 255)
            if glow is not None:
                img = cv2.max(img, cv2.cvtColor(glow, cv2.COLOR_GRAY2BGR))
        if self.fog is not None:
            img = cv2.add(cv2.multiply(img, self.fog_keep, scale=1 / 255), self.fog)
        if self.rain is not None:
            img = cv2.add(img, self._scroll(self.rain, t, 420.0, 0.15 + 0.6 * self.cond.wind, 0.6 if self.cond.light != "day" else 1.0))
        if self.snow is not None:
            img = cv2.add(img, self._scroll(self.snow, t, 45.0, 0.6 * self.cond.wind + 0.1 * math.sin(t), 1.0))
        return img

    def _scroll(self, layer, t, speed, slant, k):
        h = self.h
        off = int(t * speed * h / 360) % (layer.shape[0] - h)
        y0 = layer.shape[0] - h - off
        x0 = int((t * speed * slant * h / 360) % self.pad)
        s = layer[y0:y0 + h, x0:x0 + self.w]
        return s if k == 1.0 else cv2.convertScaleAbs(s, alpha=k)

    def sensor(self, img, rng, faults):
        """Optics and sensor: blur, lens faults, noise, compression."""
        if self.cond.motion_blur:
            img = cv2.blur(img, (self.cond.motion_blur, 1))
        if "defocus" in faults:
            small = cv2.resize(img, (max(1, self.w // 10), max(1, self.h // 10)), interpolation=cv2.INTER_AREA)
            img = cv2.GaussianBlur(cv2.resize(small, (self.w, self.h), interpolation=cv2.INTER_LINEAR), (0, 0), 2)
        if "blocked" in faults:
            keep, dark = self.blocked
            img = cv2.add(cv2.multiply(img, keep, scale=1 / 255), dark)
        noise = self.noise_heavy if "lights_out" in faults else self.noise
        if noise is not None:
            ox, oy = (int(v) for v in rng.integers(0, self.pad, 2))
            pos, neg = noise
            img = cv2.subtract(cv2.add(img, pos[oy:oy + self.h, ox:ox + self.w]), neg[oy:oy + self.h, ox:ox + self.w])
        if self.cond.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(self.cond.jpeg_quality)])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img

    def shake(self, t: float, seed: int) -> np.ndarray | None:
        """2x3 affine of the wind-shaken camera at time t (None when calm)."""
        wind = self.cond.wind
        if wind < 0.05:
            return None
        r = np.random.default_rng([seed, 77]).uniform(0, 2 * math.pi, 6)
        amp = 4.0 * wind * self.w / 640
        dx = amp * (0.6 * math.sin(2 * math.pi * 1.7 * t + r[0]) + 0.4 * math.sin(2 * math.pi * 3.1 * t + r[1]))
        dy = amp * 0.7 * (0.6 * math.sin(2 * math.pi * 1.3 * t + r[2]) + 0.4 * math.sin(2 * math.pi * 2.9 * t + r[3]))
        rot = 0.35 * wind * (math.sin(2 * math.pi * 0.9 * t + r[4]))
        m = cv2.getRotationMatrix2D((self.w / 2, self.h / 2), rot, 1.0)
        m[0, 2] += dx
        m[1, 2] += dy
        return m
