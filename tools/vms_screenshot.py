"""Screenshot of the VMS dashboard with real demo events, for the README (docs/vms/dashboard.png).

Starts `python build.py vms` on a fresh data folder, registers the demo device, uploads its image
(so the camera's zones are drawn), replays the events the demo run stored in its outbox (with
their snapshots), reports a device status, acknowledges one event and marks one a false alarm,
then photographs the dashboard in headless Debian chromium (Playwright).

    python build.py demo                        # makes out/*.swimg and out/state/runtime/
    python tools/vms_screenshot.py -o docs/vms/dashboard.png
"""
from __future__ import annotations

import argparse
import glob
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.events import Event  # noqa: E402

PW = "screenshot-admin-pw"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=None, help="default: the newest out/*.swimg")
    ap.add_argument("--state", default=str(ROOT / "out/state/runtime"), help="the demo runtime's state folder")
    ap.add_argument("--events", type=int, default=14, help="how many events to replay")
    ap.add_argument("-o", "--out", default=str(ROOT / "docs/vms/dashboard.png"))
    args = ap.parse_args()
    image = args.image or max(glob.glob(str(ROOT / "out/*.swimg")), key=lambda p: Path(p).stat().st_mtime)
    state = Path(args.state)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, str(ROOT / "build.py"), "vms", "--data", tmp, "--port", str(port),
                                 "--admin-password", PW, "--poll-agents-s", "0"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            admin = {"Authorization": "Bearer " + httpx.post(f"{url}/api/login", json={"name": "admin", "password": PW}).json()["token"]}
            art = httpx.post(f"{url}/api/artifacts", params={"kind": "image", "name": Path(image).name},
                             content=Path(image).read_bytes(), headers=admin, timeout=60).json()
            dev = art["device"]
            tok = httpx.post(f"{url}/api/devices", json={"id": dev}, headers=admin).json()["token"]
            h = {"Authorization": f"Bearer {tok}"}
            httpx.post(f"{url}/api/devices/status", headers=h, json={
                "image_version": art["version"], "board": art["board"], "site": art["site"], "health": "ok"})
            db = sqlite3.connect(state / "outbox.sqlite")
            rows = db.execute("SELECT body, snapshot FROM events ORDER BY seq").fetchall()
            with_snap = [r for r in rows if r[1]]
            chosen = (with_snap[: args.events // 2] + [r for r in rows if not r[1]][: args.events])[: args.events]
            ids = []
            for body, snap in sorted(chosen, key=lambda r: json.loads(r[0])["t_event_epoch"]):
                ev = Event.from_json(body)
                jpeg = (state / "snapshots" / snap).read_bytes() if snap else None
                payload = ev.to_json(snapshot_jpeg=jpeg) if jpeg and ev.snapshot else ev.to_json()
                httpx.post(f"{url}/api/events", content=payload, headers=h).raise_for_status()
                ids.append((ev.id, bool(jpeg)))
            httpx.post(f"{url}/api/events/{ids[0][0]}/ack", json={"note": "crew briefed"}, headers=admin)
            httpx.post(f"{url}/api/events/{ids[1][0]}/false-alarm", json={"note": "shadow"}, headers=admin)
            shoot(url, next(i for i, s in reversed(ids) if s), Path(args.out))
        finally:
            proc.terminate()
            proc.wait(15)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")
    return 0


def shoot(url: str, selected: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-background-networking"])
        page = b.new_page(viewport={"width": 1220, "height": 760})
        page.goto(url)
        page.fill("#login input[name=name]", "admin")
        page.fill("#login input[name=password]", PW)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#live.on")
        page.click(f'li.event[data-id="{selected}"]')
        page.wait_for_selector("#detail img")
        page.wait_for_timeout(800)
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = page.screenshot(type="png")
        b.close()
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    scale = 1.0
    while True:  # keep the README light: < 300 KB
        small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
        ok, buf = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if len(buf) < 290_000 or scale < 0.5:
            break
        scale -= 0.1
    out.write_bytes(buf.tobytes())


if __name__ == "__main__":
    sys.exit(main())
