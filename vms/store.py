"""The VMS's state on disk: the database plus a data folder, and the operations on both.

Data folder layout (``--data DIR``)::

    vms.sqlite            the database (when no --db URL is given)
    snapshots/<id>.jpg    event snapshots (from the event's inline ``snapshot.jpeg_base64``)
    clips/<id>.mp4        event clips (``PUT /api/events/{id}/clip``)
    hard_samples/<id>.jpg + <id>.json   frames for the teacher (``vms/teacher.py`` reads them)
    repo/<sha256>.swimg | .swpack         uploaded images and model packs

Every file is written to a temporary name, fsync'd and renamed, so a reader never sees half a
file. Retention (:meth:`Store.enforce_retention`): events older than ``max_event_age_s`` or beyond
the newest ``max_events`` are deleted with their snapshot and clip; clips older than
``max_clip_age_s`` or beyond ``max_clip_bytes`` in total (oldest first) are deleted and the event
keeps its row. Hard samples are the teacher's and are not touched by retention.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update

from . import db


@dataclass
class Settings:
    data_dir: Path
    db_url: str | None = None  # default: sqlite:///DATA/vms.sqlite
    max_event_age_s: float = 90 * 86400.0
    max_events: int = 1_000_000
    max_clip_age_s: float = 30 * 86400.0
    max_clip_bytes: int = 20 << 30
    max_clip_upload: int = 200 << 20
    max_artifact_upload: int = 2 << 30
    retention_every_s: float = 60.0
    session_ttl_s: float = 12 * 3600.0
    trusted_keys: list[Path] = field(default_factory=list)  # PEM public keys that images must be signed with
    offline_after_s: float = 120.0  # a device not heard from for this long shows as offline
    poll_agents_every_s: float = 30.0  # ask agents (devices with an agent_url) for their status; 0: never

    @property
    def url(self) -> str:
        return self.db_url or f"sqlite:///{Path(self.data_dir).resolve() / 'vms.sqlite'}"


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` durably: temp file, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data = Path(settings.data_dir)
        for sub in ("snapshots", "clips", "hard_samples", "repo"):
            (self.data / sub).mkdir(parents=True, exist_ok=True)
        self.engine = db.make_engine(settings.url)

    # --- paths ---------------------------------------------------------------------------------

    def snapshot_path(self, name: str) -> Path:
        return self.data / "snapshots" / Path(name).name

    def clip_path(self, name: str) -> Path:
        return self.data / "clips" / Path(name).name

    def hard_sample_dir(self) -> Path:
        return self.data / "hard_samples"

    def repo_path(self, sha: str, kind: str) -> Path:
        return self.data / "repo" / f"{sha}.{'swimg' if kind == 'image' else 'swpack'}"

    # --- audit ---------------------------------------------------------------------------------

    def audit(self, conn, actor: str, action: str, target: str | None = None, **detail) -> None:
        """Record a state-changing action inside the caller's transaction."""
        conn.execute(insert(db.audit).values(t=time.time(), actor=actor, action=action, target=target,
                                             detail=json.dumps(detail, sort_keys=True, default=str) if detail else None))

    # --- hard samples --------------------------------------------------------------------------

    def write_hard_sample(self, conn, *, sample_id: str, device: str, camera: str, t: float, reason: str,
                          boxes: list, source: str, event_id: str | None, jpeg: bytes) -> bool:
        """Store a hard sample (files first, then its row); False if `sample_id` exists already."""
        if conn.execute(select(db.hard_samples.c.id).where(db.hard_samples.c.id == sample_id)).first():
            return False
        meta = {"id": sample_id, "device": device, "camera": camera, "t": t, "reason": reason, "boxes": boxes,
                "source": source, "event_id": event_id}
        folder = self.hard_sample_dir()
        write_file(folder / f"{sample_id}.jpg", jpeg)
        write_file(folder / f"{sample_id}.json", (json.dumps(meta, sort_keys=True) + "\n").encode())
        conn.execute(insert(db.hard_samples).values(id=sample_id, device=device, camera=camera, t=t, reason=reason,
                                                    source=source, event_id=event_id, created=time.time()))
        return True

    # --- retention -----------------------------------------------------------------------------

    def enforce_retention(self, now: float | None = None) -> dict:
        """Apply the retention limits; what was removed (also written to the audit log)."""
        s = self.settings
        now = time.time() if now is None else now
        removed_files: list[Path] = []
        out = {"events": 0, "clips": 0}
        with self.engine.begin() as c:
            e = db.events
            cutoff = now - s.max_event_age_s
            doomed = c.execute(select(e.c.seq, e.c.snapshot, e.c.clip).where(e.c.t_event < cutoff)).all()
            total = c.execute(select(func.count()).select_from(e)).scalar_one() - len(doomed)
            if total > s.max_events:
                keep_from = c.execute(select(e.c.seq).where(e.c.t_event >= cutoff)
                                      .order_by(e.c.t_event.desc(), e.c.seq.desc())
                                      .offset(s.max_events).limit(1)).first()
                if keep_from is not None:
                    pivot = c.execute(select(e.c.t_event, e.c.seq).where(e.c.seq == keep_from.seq)).first()
                    doomed += c.execute(select(e.c.seq, e.c.snapshot, e.c.clip).where(
                        e.c.t_event >= cutoff,
                        (e.c.t_event < pivot.t_event) | ((e.c.t_event == pivot.t_event) & (e.c.seq <= pivot.seq)))).all()
            if doomed:
                seqs = [r.seq for r in doomed]
                for i in range(0, len(seqs), 500):
                    c.execute(delete(e).where(e.c.seq.in_(seqs[i:i + 500])))
                removed_files += [self.snapshot_path(r.snapshot) for r in doomed if r.snapshot]
                removed_files += [self.clip_path(r.clip) for r in doomed if r.clip]
                out["events"] = len(doomed)
            clip_doomed = c.execute(select(e.c.seq, e.c.clip).where(e.c.clip.is_not(None),
                                                                    e.c.clip_at < now - s.max_clip_age_s)).all()
            left = c.execute(select(e.c.seq, e.c.clip, e.c.clip_size).where(
                e.c.clip.is_not(None), e.c.clip_at >= now - s.max_clip_age_s).order_by(e.c.clip_at.desc())).all()
            used = 0
            for r in left:
                used += r.clip_size or 0
                if used > s.max_clip_bytes:
                    clip_doomed.append(r)
            if clip_doomed:
                seqs = [r.seq for r in clip_doomed]
                for i in range(0, len(seqs), 500):
                    c.execute(update(e).where(e.c.seq.in_(seqs[i:i + 500])).values(clip=None, clip_size=None, clip_at=None))
                removed_files += [self.clip_path(r.clip) for r in clip_doomed]
                out["clips"] = len(clip_doomed)
            if out["events"] or out["clips"]:
                self.audit(c, "system", "retention", None, **out)
        for p in removed_files:
            p.unlink(missing_ok=True)
        return out
