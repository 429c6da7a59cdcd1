"""The fleet: device registry (tokens, status, health, agent polling), the image and model-pack
repository, pushes to devices through their agents (``runtime.agent.client``), and the cameras
with their zones (read from the ``config.json`` of each device's newest image)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import func, insert, select, update
from starlette.concurrency import run_in_threadpool

from . import db
from .auth import new_token, require_device, require_role, token_hash
from .routes_events import Who, _body, _state

router = APIRouter()
log = logging.getLogger("sitewarden.vms.fleet")
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
HEALTH = ("ok", "degraded", "failed", "unknown")


def device_out(row, offline_after_s: float) -> dict:
    now = time.time()
    return {"id": row.id, "board": row.board, "site": row.site, "image_version": row.image_version,
            "image_sha256": row.image_sha256, "health": row.health or "unknown",
            "status": json.loads(row.status) if row.status else None, "agent_url": row.agent_url,
            "last_seen": row.last_seen, "online": bool(row.last_seen and now - row.last_seen < offline_after_s),
            "token": row.token_hash is not None, "created": row.created}


def _device(c, device_id: str):
    row = c.execute(select(db.devices).where(db.devices.c.id == device_id)).first()
    if row is None:
        raise HTTPException(404, f"no device {device_id}")
    return row


# --- devices ---------------------------------------------------------------------------------------


@router.get("/api/devices", summary="The fleet: versions, health, last seen")
def list_devices(request: Request, who: Who):
    require_role(who, "viewer")
    st = _state(request)
    with st.store.engine.connect() as c:
        rows = c.execute(select(db.devices).order_by(db.devices.c.id)).all()
    return {"devices": [device_out(r, st.settings.offline_after_s) for r in rows]}


@router.post("/api/devices", status_code=201, summary="Register a device (admin); its token is shown once")
async def add_device(request: Request, who: Who):
    """``{id, token?, agent_url?, agent_token?}``. Without ``token`` one is generated. The
    token goes into the device's sink (``token: !secret vms_token``); only its hash is kept.
    Two devices cannot share a token (409)."""
    require_role(who, "admin")
    d = await _body(request)
    dev = str(d.get("id") or "")
    if not DEVICE_ID.match(dev):
        raise HTTPException(400, "id: 1-128 of letters, digits, '_.:-'")
    token = d.get("token") or new_token("swd")
    if not isinstance(token, str) or len(token) < 16 or token.startswith("sws_") or not token.isprintable() \
            or " " in token:
        raise HTTPException(400, "token: at least 16 printable characters without spaces (not starting sws_)")
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            if c.execute(select(db.devices.c.id).where(db.devices.c.id == dev)).first():
                raise HTTPException(409, f"device {dev} exists; rotate its token instead")
            if c.execute(select(db.devices.c.id).where(db.devices.c.token_hash == token_hash(token))).first():
                raise HTTPException(409, "another device has this token; each device needs its own")
            c.execute(insert(db.devices).values(id=dev, token_hash=token_hash(token), agent_url=d.get("agent_url"),
                                                agent_token=d.get("agent_token"), health="unknown", created=time.time()))
            st.store.audit(c, who.actor, "device.add", dev, agent_url=d.get("agent_url"))
            return device_out(_device(c, dev), st.settings.offline_after_s)

    out = await run_in_threadpool(commit)
    st.auth.clear()
    return JSONResponse({"device": out, "token": token}, status_code=201)


@router.patch("/api/devices/{device_id}", summary="Change a device's agent URL or agent token (admin)")
async def patch_device(request: Request, device_id: str, who: Who):
    require_role(who, "admin")
    d = await _body(request)
    values = {k: d[k] for k in ("agent_url", "agent_token") if k in d}
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            _device(c, device_id)
            if values:
                c.execute(update(db.devices).where(db.devices.c.id == device_id).values(**values))
                st.store.audit(c, who.actor, "device.update", device_id, fields=sorted(values))
            return device_out(_device(c, device_id), st.settings.offline_after_s)

    return await run_in_threadpool(commit)


@router.post("/api/devices/{device_id}/token", summary="Rotate a device's token (admin); the new one is shown once")
async def rotate_token(request: Request, device_id: str, who: Who):
    require_role(who, "admin")
    st = _state(request)
    token = new_token("swd")

    def commit():
        with st.store.engine.begin() as c:
            _device(c, device_id)
            c.execute(update(db.devices).where(db.devices.c.id == device_id).values(token_hash=token_hash(token)))
            st.store.audit(c, who.actor, "device.token.rotate", device_id)

    await run_in_threadpool(commit)
    st.auth.clear()
    return {"device": device_id, "token": token}


@router.delete("/api/devices/{device_id}/token", summary="Revoke a device's token (admin)")
async def revoke_token(request: Request, device_id: str, who: Who):
    require_role(who, "admin")
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            _device(c, device_id)
            c.execute(update(db.devices).where(db.devices.c.id == device_id).values(token_hash=None))
            st.store.audit(c, who.actor, "device.token.revoke", device_id)

    await run_in_threadpool(commit)
    st.auth.clear()
    return {"device": device_id, "token": None}


def _store_status(st, device_id: str, report: dict, actor: str) -> dict:
    health = report.get("health")
    if isinstance(health, dict):  # the agent's status carries a health object
        health = health.get("state") or ("ok" if health.get("ok") else None)
    health = health if health in HEALTH else "unknown"
    version = report.get("image_version")
    with st.store.engine.begin() as c:
        _device(c, device_id)
        c.execute(update(db.devices).where(db.devices.c.id == device_id).values(
            status=json.dumps(report, sort_keys=True, default=str), health=health, last_seen=time.time(),
            image_version=int(version) if isinstance(version, int) else None,
            image_sha256=report.get("image_sha256") if isinstance(report.get("image_sha256"), str) else None,
            board=report.get("board") if isinstance(report.get("board"), str) else None,
            site=report.get("site") if isinstance(report.get("site"), str) else None))
        out = device_out(_device(c, device_id), st.settings.offline_after_s)
    st.broker.publish("device", out)
    return out


@router.post("/api/devices/status", summary="A device reports its status (device token)")
async def report_status(request: Request, who: Who):
    """``{image_version, image_sha256, board, site, health: ok|degraded|failed, ...}``; the whole
    report is kept and shown in the fleet view."""
    require_device(who)
    report = await _body(request)
    return await run_in_threadpool(_store_status, _state(request), who.name, report, who.actor)


def poll_agent(st, device_id: str) -> dict:
    """Ask a device's agent for its status and record it (blocking)."""
    from runtime.agent import client

    with st.store.engine.connect() as c:
        row = _device(c, device_id)
    if not row.agent_url:
        raise HTTPException(400, f"device {device_id} has no agent_url")
    try:
        report = client.status(row.agent_url, row.agent_token or "")
    except client.AgentError as e:
        report = {"health": "unknown", "error": str(e)}
    slots = report.get("slots") if isinstance(report.get("slots"), dict) else {}
    active = slots.get(report.get("active")) if report.get("active") else None
    if isinstance(active, dict):  # the agent's status: slots, active slot, runtime health
        for k in ("image_version", "site", "board"):
            report.setdefault(k, active.get(k))
        report.setdefault("image_sha256", active.get("sha256"))
    rt = report.get("runtime")
    if isinstance(rt, dict) and "health" not in report:
        report["health"] = "ok" if rt.get("healthy") else "degraded" if rt.get("running") else "failed"
    return _store_status(st, device_id, report, "system")


@router.post("/api/devices/{device_id}/poll", summary="Poll a device's agent for its status now (operator)")
def poll_device(request: Request, device_id: str, who: Who):
    require_role(who, "operator")
    return poll_agent(_state(request), device_id)


# --- repository ------------------------------------------------------------------------------------


def _image_meta(path, trusted_keys) -> dict:
    """Site, device, board, version and cameras/zones of an image (manifest + config.json)."""
    from runtime.image import MANIFEST, ImageError, Manifest, _members, load_public_key, read_image

    blob = path.read_bytes()
    try:
        members = _members(blob)
        manifest = Manifest.from_json(members[MANIFEST])
    except (ImageError, KeyError) as e:
        raise HTTPException(400, f"not an image: {e}") from None
    verified = None
    if trusted_keys:
        try:
            read_image(blob, [load_public_key(p.read_bytes()) for p in trusted_keys])
            verified = True
        except ImageError:
            verified = False
    cameras = []
    try:
        cfg = json.loads(members.get("config.json", b"{}"))
        for cam in cfg.get("cameras", []):
            cameras.append({"id": cam["id"], "resolution": cam.get("resolution"),
                            "zones": [{"id": z["id"], "kind": z.get("kind"), "polygon_px": z.get("polygon_px")}
                                      for z in cam.get("zones", [])]})
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return {"site": manifest.site, "device": manifest.device, "board": manifest.board, "version": manifest.image_version,
            "verified": verified, "meta": {"role": manifest.role, "compatible": list(manifest.compatible),
                                           "key_id": manifest.key_id, "builder": manifest.builder_version,
                                           "cameras": cameras}}


@router.post("/api/artifacts", status_code=201, summary="Upload an image (.swimg) or model pack (.swpack) (admin)")
async def upload_artifact(request: Request, who: Who, kind: str | None = None, name: str = "upload"):
    """The body is the file. Images are read (manifest, config.json: cameras and zones) and, when
    the VMS has trusted keys (``--key``), their signature is checked (``verified``)."""
    require_role(who, "admin")
    if kind not in ("image", "pack"):
        raise HTTPException(400, "kind: image or pack")
    st = _state(request)
    tmp = st.store.data / "repo" / f".upload-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    sha, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > st.settings.max_artifact_upload:
                    raise HTTPException(413, "too large")
                sha.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        digest = sha.hexdigest()
        info = await run_in_threadpool(_image_meta, tmp, st.settings.trusted_keys) if kind == "image" else \
            {"site": None, "device": None, "board": None, "version": None, "verified": None, "meta": {}}
        final = st.store.repo_path(digest, kind)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)

    def commit():
        with st.store.engine.begin() as c:
            if c.execute(select(db.artifacts.c.id).where(db.artifacts.c.id == digest)).first():
                return False
            c.execute(insert(db.artifacts).values(id=digest, kind=kind, name=os.path.basename(name), size=size,
                                                  site=info["site"], device=info["device"], board=info["board"],
                                                  version=info["version"], verified=info["verified"],
                                                  meta=json.dumps(info["meta"]), uploaded_by=who.actor,
                                                  created=time.time()))
            st.store.audit(c, who.actor, "artifact.upload", digest, kind=kind, name=name, size=size)
            return True

    made = await run_in_threadpool(commit)
    return JSONResponse({"id": digest, "kind": kind, "size": size, **{k: info[k] for k in ("site", "device", "board",
                         "version", "verified")}}, status_code=201 if made else 200)


def artifact_out(r) -> dict:
    return {"id": r.id, "kind": r.kind, "name": r.name, "size": r.size, "site": r.site, "device": r.device,
            "board": r.board, "version": r.version, "verified": r.verified, "meta": json.loads(r.meta or "{}"),
            "uploaded_by": r.uploaded_by, "created": r.created}


@router.get("/api/artifacts", summary="The image and model-pack repository")
def list_artifacts(request: Request, who: Who):
    require_role(who, "viewer")
    with _state(request).store.engine.connect() as c:
        rows = c.execute(select(db.artifacts).order_by(db.artifacts.c.created.desc())).all()
    return {"artifacts": [artifact_out(r) for r in rows]}


@router.get("/api/artifacts/{artifact_id}/download", summary="Download an image or pack (operator)")
def download_artifact(request: Request, artifact_id: str, who: Who):
    require_role(who, "operator")
    st = _state(request)
    with st.store.engine.connect() as c:
        r = c.execute(select(db.artifacts).where(db.artifacts.c.id == artifact_id)).first()
    if r is None:
        raise HTTPException(404, "no such artifact")
    return FileResponse(st.store.repo_path(r.id, r.kind), filename=r.name, media_type="application/octet-stream")


def _run_push(st, seq: int, artifact, device) -> None:
    from runtime.agent import client

    path = st.store.repo_path(artifact.id, artifact.kind)
    with st.store.engine.begin() as c:
        c.execute(update(db.pushes).where(db.pushes.c.seq == seq).values(state="running"))
    try:
        send = client.flash if artifact.kind == "image" else client.push_pack
        reply = send(path, device.agent_url, device.agent_token or "")
        state = "done" if reply.get("verdict") == "ok" else "failed"
        message = json.dumps(reply, sort_keys=True, default=str)
    except Exception as e:  # AgentError, OSError: recorded, never raised into the server
        state, message = "failed", f"{type(e).__name__}: {e}"
    with st.store.engine.begin() as c:
        c.execute(update(db.pushes).where(db.pushes.c.seq == seq).values(state=state, message=message,
                                                                          finished=time.time()))
        st.store.audit(c, "system", "push.result", device.id, artifact=artifact.id, state=state)
    st.broker.publish("push", {"seq": seq, "device": device.id, "artifact": artifact.id, "state": state})
    try:
        poll_agent(st, device.id)
    except Exception:
        pass


@router.post("/api/artifacts/{artifact_id}/push", status_code=202, summary="Push to devices via their agents (admin)")
async def push_artifact(request: Request, artifact_id: str, who: Who):
    """``{devices: [id, ...]}``. Each push runs in the background (``GET /api/pushes`` shows it);
    the agent verifies, installs and rolls back on failure, so the VMS only records its verdict."""
    require_role(who, "admin")
    d = await _body(request)
    ids = d.get("devices")
    if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
        raise HTTPException(400, "devices: expected a list of device ids")
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            art = c.execute(select(db.artifacts).where(db.artifacts.c.id == artifact_id)).first()
            if art is None:
                raise HTTPException(404, "no such artifact")
            devs = [_device(c, x) for x in ids]
            missing = [x.id for x in devs if not x.agent_url]
            if missing:
                raise HTTPException(400, f"no agent_url for {', '.join(missing)}")
            jobs = []
            for dev in devs:
                seq = c.execute(insert(db.pushes).values(artifact=art.id, device=dev.id, state="queued", by=who.actor,
                                                         created=time.time())).inserted_primary_key[0]
                st.store.audit(c, who.actor, "push.start", dev.id, artifact=art.id, kind=art.kind)
                jobs.append((seq, dev))
            return art, jobs

    art, jobs = await run_in_threadpool(commit)
    for seq, dev in jobs:
        threading.Thread(target=_run_push, args=(st, seq, art, dev), name=f"push-{dev.id}", daemon=True).start()
    return JSONResponse({"pushes": [seq for seq, _ in jobs]}, status_code=202)


@router.get("/api/pushes", summary="Pushes and their verdicts, newest first")
def list_pushes(request: Request, who: Who, limit: int = Query(100, ge=1, le=1000)):
    require_role(who, "viewer")
    with _state(request).store.engine.connect() as c:
        rows = c.execute(select(db.pushes).order_by(db.pushes.c.seq.desc()).limit(limit)).all()
    return {"pushes": [dict(r._mapping) for r in rows]}


# --- cameras ---------------------------------------------------------------------------------------


@router.get("/api/cameras", summary="Cameras with their zones (from each device's newest image) and last event")
def list_cameras(request: Request, who: Who):
    require_role(who, "viewer")
    e, a = db.events, db.artifacts
    cams: dict[tuple[str, str], dict] = {}
    with _state(request).store.engine.connect() as c:
        images = c.execute(select(a).where(a.c.kind == "image").order_by(a.c.version.asc(), a.c.created.asc())).all()
        for r in images:  # newer images overwrite older ones
            for cam in json.loads(r.meta or "{}").get("cameras", []):
                cams[(r.device, cam["id"])] = {"id": cam["id"], "device": r.device, "resolution": cam.get("resolution"),
                                               "zones": cam.get("zones", []), "image_version": r.version}
        last = select(e.c.device, e.c.camera, e.c.seq).where(
            e.c.seq.in_(select(func.max(e.c.seq)).group_by(e.c.device, e.c.camera)))
        latest_snap = select(e.c.device, e.c.camera, e.c.id).where(
            e.c.seq.in_(select(func.max(e.c.seq)).where(e.c.snapshot.is_not(None)).group_by(e.c.device, e.c.camera)))
        for r in c.execute(last):
            cams.setdefault((r.device, r.camera), {"id": r.camera, "device": r.device, "resolution": None, "zones": [],
                                                   "image_version": None})
        for r in c.execute(latest_snap):
            cams[(r.device, r.camera)]["snapshot_url"] = f"/api/events/{r.id}/snapshot"
    return {"cameras": sorted(cams.values(), key=lambda x: (x["device"] or "", x["id"]))}
