"""Events, snapshots, clips, acknowledgements, false alarms, hard samples and situation flags."""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import re
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import func, insert, select, update
from starlette.concurrency import run_in_threadpool

from runtime.events import EVENT_TYPES, Event, EventError, snapshot_from_json

from . import db
from .auth import Principal, require_device, require_role
from .ingest import event_out
from .store import write_file

router = APIRouter()
MAX_EVENT_BYTES = 8 << 20
SAMPLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EVENT_ID = SAMPLE_ID  # the runtime's ids are 32 hex digits; the VMS accepts ids safe in paths and URLs
DEVICE_REASONS = ("low_confidence", "disagreement")  # runtime/hardsample.py; "false_alarm" is the VMS's own
MAX_JSON_BYTES = 16 << 20


async def principal(request: Request) -> Principal:
    return await request.app.state.auth(request)


Who = Annotated[Principal, Depends(principal)]


def _state(request: Request):
    return request.app.state


def _epoch(value: str | None, name: str) -> float | None:
    """Epoch seconds or an ISO 8601 time (``...Z`` allowed)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(400, f"{name}: expected epoch seconds or an ISO 8601 time") from None


def _event_row(conn, event_id: str):
    row = conn.execute(select(db.events).where(db.events.c.id == event_id)).first()
    if row is None:
        raise HTTPException(404, f"no event {event_id}")
    return row


# --- ingest ----------------------------------------------------------------------------------------


@router.post("/api/events", status_code=201, summary="Ingest one event (device token)")
async def ingest_event(request: Request, who: Who):
    """Store one event (the JSON of ``runtime.events.Event.to_json``), durably, before replying.
    201: stored now; 200: already stored (the same row); 400: not an event; 403: the event's
    device is not the token's; 503 + Retry-After: storage failed, send again."""
    require_device(who)
    if int(request.headers.get("content-length") or 0) > MAX_EVENT_BYTES:
        raise HTTPException(413, f"an event is at most {MAX_EVENT_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_EVENT_BYTES:
        raise HTTPException(413, f"an event is at most {MAX_EVENT_BYTES} bytes")
    try:
        d = json.loads(raw)
        event = Event.from_dict(d)
        jpeg = snapshot_from_json(raw) if isinstance(d.get("snapshot"), dict) and "jpeg_base64" in d["snapshot"] else None
    except (EventError, ValueError, binascii.Error) as e:
        raise HTTPException(400, f"not an event: {e}") from None
    if not EVENT_ID.match(event.id):
        raise HTTPException(400, "id: letters, digits, _ and - only (at most 64)")
    if event.device != who.name:
        raise HTTPException(403, f"this token is for device '{who.name}', not '{event.device}'")
    st = _state(request)
    snap_name = None
    if jpeg is not None:
        snap_name = f"{event.id}.jpg"
        await run_in_threadpool(write_file, st.store.snapshot_path(snap_name), jpeg)
    try:
        created, row = await asyncio.wrap_future(st.ingestor.submit(event, event.to_json().decode("utf-8"), snap_name))
    except Exception as e:
        return JSONResponse({"detail": f"not stored: {type(e).__name__}"}, status_code=503,
                            headers={"Retry-After": "2"})
    return JSONResponse(row, status_code=201 if created else 200)


@router.post("/api/ping", status_code=204, summary="An empty authenticated endpoint (benchmark baseline)")
async def ping(who: Who):
    return Response(status_code=204)


# --- query -----------------------------------------------------------------------------------------


@router.get("/api/events", summary="Query events, newest first")
def list_events(request: Request, who: Who, camera: str | None = None, device: str | None = None,
                type: str | None = None, severity: str | None = None, zone: str | None = None,
                since: str | None = None, until: str | None = None, acked: bool | None = None,
                false_alarm: bool | None = None, before: int | None = None,
                limit: int = Query(100, ge=1, le=500)):
    """Filters combine with AND; ``since``/``until`` bound the event time (epoch s or ISO 8601).
    Pages: pass the answer's ``next`` as ``before`` for the next (older) page."""
    require_role(who, "viewer")
    e = db.events
    q = select(e)
    for col, val in ((e.c.camera, camera), (e.c.device, device), (e.c.type, type), (e.c.severity, severity),
                     (e.c.zone, zone)):
        if val is not None:
            q = q.where(col == val)
    if (t0 := _epoch(since, "since")) is not None:
        q = q.where(e.c.t_event >= t0)
    if (t1 := _epoch(until, "until")) is not None:
        q = q.where(e.c.t_event < t1)
    if acked is not None:
        q = q.where(e.c.acked_at.is_not(None) if acked else e.c.acked_at.is_(None))
    if false_alarm is not None:
        q = q.where(e.c.false_alarm == false_alarm)
    if before is not None:
        q = q.where(e.c.seq < before)
    with _state(request).store.engine.connect() as c:
        rows = c.execute(q.order_by(e.c.seq.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"events": [event_out(r) for r in rows], "next": rows[-1].seq if more else None}


@router.get("/api/events/{event_id}", summary="One event")
def get_event(request: Request, event_id: str, who: Who):
    require_role(who, "viewer")
    with _state(request).store.engine.connect() as c:
        return event_out(_event_row(c, event_id))


def _event_file(request: Request, event_id: str, who: Who, what: str, media_type: str) -> FileResponse:
    """An event's stored snapshot or clip (``what``), 404 when it has none."""
    require_role(who, "viewer")
    st = _state(request)
    with st.store.engine.connect() as c:
        name = getattr(_event_row(c, event_id), what)
    path = (st.store.snapshot_path if what == "snapshot" else st.store.clip_path)(name) if name else None
    if path is None or not path.exists():
        raise HTTPException(404, f"this event has no {what}")
    return FileResponse(path, media_type=media_type)


@router.get("/api/events/{event_id}/snapshot", summary="An event's snapshot (JPEG)")
def get_snapshot(request: Request, event_id: str, who: Who):
    return _event_file(request, event_id, who, "snapshot", "image/jpeg")


# --- clips -----------------------------------------------------------------------------------------


@router.put("/api/events/{event_id}/clip", summary="Upload an event's clip (MP4)")
async def put_clip(request: Request, event_id: str, who: Who):
    """The body is the MP4 itself. The event's own device or an operator may upload; a second
    upload replaces the first. Clips are kept within the clip retention limits."""
    st = _state(request)
    if who.kind == "user":
        require_role(who, "operator")
    def lookup():
        with st.store.engine.connect() as c:
            return _event_row(c, event_id)

    row = await run_in_threadpool(lookup)
    if who.kind == "device" and row.device != who.name:
        raise HTTPException(403, "a device may only upload clips of its own events")
    limit = st.settings.max_clip_upload
    name = f"{event_id}.mp4"
    final = st.store.clip_path(name)
    tmp = final.with_name(final.name + ".upload")
    size, head = 0, b""
    with open(tmp, "wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise HTTPException(413, f"a clip is at most {limit} bytes")
            if len(head) < 12:
                head += chunk[:12]
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    if size < 12 or head[4:8] != b"ftyp":
        tmp.unlink(missing_ok=True)
        raise HTTPException(400, "not an MP4 (no ftyp box)")
    os.replace(tmp, final)

    def commit():
        with st.store.engine.begin() as c:
            c.execute(update(db.events).where(db.events.c.id == event_id)
                      .values(clip=name, clip_size=size, clip_at=time.time()))
            st.store.audit(c, who.actor, "clip.upload", event_id, bytes=size)
            return event_out(_event_row(c, event_id))

    out = await run_in_threadpool(commit)
    st.broker.publish("update", out)
    return JSONResponse(out, status_code=201 if row.clip is None else 200)


@router.get("/api/events/{event_id}/clip", summary="An event's clip (MP4; Range requests supported)")
def get_clip(request: Request, event_id: str, who: Who):
    return _event_file(request, event_id, who, "clip", "video/mp4")


# --- acknowledge, false alarm ----------------------------------------------------------------------


async def _body(request: Request) -> dict:
    if int(request.headers.get("content-length") or 0) > MAX_JSON_BYTES:
        raise HTTPException(413, f"at most {MAX_JSON_BYTES} bytes")
    raw = await request.body()
    if not raw:
        return {}
    try:
        d = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "expected a JSON object") from None
    if not isinstance(d, dict):
        raise HTTPException(400, "expected a JSON object")
    return d


@router.post("/api/events/{event_id}/ack", summary="Acknowledge an event (operator)")
async def ack_event(request: Request, event_id: str, who: Who):
    require_role(who, "operator")
    note = (await _body(request)).get("note")
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            row = _event_row(c, event_id)
            if row.acked_at is None:
                c.execute(update(db.events).where(db.events.c.id == event_id)
                          .values(acked_by=who.name, acked_at=time.time(), note=note if note is not None else row.note))
                st.store.audit(c, who.actor, "event.ack", event_id, note=note)
            return event_out(_event_row(c, event_id))

    out = await run_in_threadpool(commit)
    st.broker.publish("update", out)
    return out


def _boxes(details: dict) -> list:
    """The student boxes an event carries (``boxes`` or ``box``) as [x1, y1, x2, y2, score]."""
    for key in ("boxes", "box"):
        v = details.get(key)
        if isinstance(v, list) and v:
            return norm_boxes(v if isinstance(v[0], list) else [v])
    return []


def norm_boxes(boxes) -> list:
    """[[x1, y1, x2, y2, score?], ...] -> floats with the score (1.0 when absent); ValueError otherwise."""
    if not isinstance(boxes, list):
        raise ValueError("boxes: expected a list of [x1, y1, x2, y2, score]")
    out = []
    for b in boxes:
        if not isinstance(b, list) or len(b) < 4 or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                                            for x in b[:5]):
            raise ValueError("boxes: expected a list of [x1, y1, x2, y2, score]")
        out.append([float(x) for x in b[:4]] + [float(b[4]) if len(b) > 4 else 1.0])
    return out


@router.post("/api/events/{event_id}/false-alarm", summary="Mark an event a false alarm (operator)")
async def false_alarm(request: Request, event_id: str, who: Who):
    """Marks (and acknowledges) the event; its snapshot becomes a hard sample
    (``source: false_alarm``) for the teacher."""
    require_role(who, "operator")
    note = (await _body(request)).get("note")
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            row = _event_row(c, event_id)
            sample = None
            if not row.false_alarm:
                now = time.time()
                c.execute(update(db.events).where(db.events.c.id == event_id).values(
                    false_alarm=True, acked_by=row.acked_by or who.name, acked_at=row.acked_at or now,
                    note=note if note is not None else row.note))
                if row.snapshot and st.store.snapshot_path(row.snapshot).exists():
                    ev = json.loads(row.body)
                    sample = f"fa_{event_id}"
                    st.store.write_hard_sample(
                        c, sample_id=sample, device=row.device, camera=row.camera, t=row.t_event,
                        reason="false_alarm",
                        boxes=_boxes(ev.get("details") or {}), source="false_alarm", event_id=event_id,
                        jpeg=st.store.snapshot_path(row.snapshot).read_bytes())
                st.store.audit(c, who.actor, "event.false_alarm", event_id, note=note, hard_sample=sample)
            return event_out(_event_row(c, event_id))

    out = await run_in_threadpool(commit)
    st.broker.publish("update", out)
    return out


# --- hard samples ----------------------------------------------------------------------------------


@router.post("/api/hard-samples", status_code=201, summary="Upload a hard sample (device token)")
async def post_hard_sample(request: Request, who: Who):
    """JSON ``{camera, t, reason, boxes, jpeg_base64, id?, event_id?}``: a frame where the
    student was unsure (``reason: low_confidence``) or disagreed with the tracker
    (``disagreement``); ``boxes``: the student's ``[x1, y1, x2, y2, score]`` in image pixels. Stored as ``hard_samples/<id>.jpg`` +
    ``<id>.json`` for the teacher job. The id defaults to a digest of (device, camera, t, reason),
    so a retried upload is stored once (200 the second time)."""
    require_device(who)
    d = await _body(request)
    try:
        camera, reason = str(d["camera"]), d.get("reason")
        t = float(d["t"])
        jpeg = base64.b64decode(d["jpeg_base64"], validate=True)
        boxes = norm_boxes(d.get("boxes") or [])
        if reason not in DEVICE_REASONS:
            raise ValueError(f"reason: one of {', '.join(DEVICE_REASONS)}")
    except (KeyError, ValueError, TypeError, binascii.Error) as e:
        raise HTTPException(400, f"not a hard sample: {e}") from None
    if not jpeg.startswith(b"\xff\xd8"):
        raise HTTPException(400, "jpeg_base64 is not a JPEG")
    sample_id = d.get("id") or hashlib.sha256(
        "\x1f".join(("hard-sample-v1", who.name, camera, repr(t), reason)).encode()).hexdigest()[:32]
    if not isinstance(sample_id, str) or not SAMPLE_ID.match(sample_id):
        raise HTTPException(400, "id: letters, digits, _ and - only (at most 64)")
    st = _state(request)

    def commit():
        with st.store.engine.begin() as c:
            made = st.store.write_hard_sample(c, sample_id=sample_id, device=who.name, camera=camera, t=t,
                                              reason=reason, boxes=boxes, source="device",
                                              event_id=d.get("event_id"), jpeg=jpeg)
            if made:
                st.store.audit(c, who.actor, "hard_sample.add", sample_id, camera=camera, reason=reason)
            return made

    made = await run_in_threadpool(commit)
    return JSONResponse({"id": sample_id, "created": made}, status_code=201 if made else 200)


@router.get("/api/hard-samples", summary="List hard samples, newest first")
def list_hard_samples(request: Request, who: Who, limit: int = Query(100, ge=1, le=1000)):
    require_role(who, "viewer")
    h = db.hard_samples
    with _state(request).store.engine.connect() as c:
        rows = c.execute(select(h).order_by(h.c.created.desc()).limit(limit)).all()
        total = c.execute(select(func.count()).select_from(h)).scalar_one()
    return {"total": total, "samples": [dict(r._mapping) for r in rows]}


# --- situation flags -------------------------------------------------------------------------------


@router.get("/api/flags", summary="Situation flags (rain, snow, ...); devices fetch theirs")
def get_flags(request: Request, who: Who, scope: str | None = None):
    if who.kind == "user":
        require_role(who, "viewer")
    f = db.flags
    q = select(f)
    if scope is not None:
        q = q.where(f.c.scope.in_([scope, "*"]))
    with _state(request).store.engine.connect() as c:
        return {"flags": [dict(r._mapping) for r in c.execute(q.order_by(f.c.scope, f.c.name))]}


@router.put("/api/flags/{scope}/{name}", summary="Set a situation flag (operator); scope '*' is site-wide")
async def put_flag(request: Request, scope: str, name: str, who: Who):
    require_role(who, "operator")
    value = (await _body(request)).get("value")
    if not isinstance(value, bool):
        raise HTTPException(400, "value: expected true or false")
    st = _state(request)

    def commit():
        f = db.flags
        with st.store.engine.begin() as c:
            c.execute(f.delete().where(f.c.scope == scope, f.c.name == name))
            c.execute(insert(f).values(scope=scope, name=name, value=value, set_by=who.actor, t=time.time()))
            st.store.audit(c, who.actor, "flag.set", f"{scope}/{name}", value=value)

    await run_in_threadpool(commit)
    st.broker.publish("flag", {"scope": scope, "name": name, "value": value})
    return {"scope": scope, "name": name, "value": value}


__all__ = ["router", "principal", "Who", "EVENT_TYPES"]
