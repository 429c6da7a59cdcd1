"""The VMS's tables (SQLAlchemy Core) and its engine: an SQLite file by default, PostgreSQL by URL.

SQLite runs in WAL mode with ``synchronous=FULL`` (every commit fsyncs the log, so a reply sent
after a commit survives a power cut); PostgreSQL keeps its own defaults (``synchronous_commit=on``).
Timestamps are epoch seconds (UTC) as floats; JSON is stored as text, so the same schema works on
both engines without dialect types.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        create_engine, event)
from sqlalchemy.engine import Engine

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("name", String(64), primary_key=True),
    Column("pw_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),  # viewer | operator | admin
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("id", String(128), primary_key=True),
    Column("token_hash", String(64), unique=True),  # null once revoked
    Column("board", String(64)),
    Column("site", String(128)),
    Column("image_version", Integer),  # what the device reports running
    Column("image_sha256", String(64)),
    Column("health", String(32)),  # ok | degraded | failed | unknown
    Column("status", Text),  # the last status report (JSON)
    Column("agent_url", Text),
    Column("agent_token", Text),  # the credential the VMS uses to talk to this device's agent
    Column("last_seen", Float),
    Column("created", Float, nullable=False),
)

events = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("site", String(128), nullable=False),
    Column("device", String(128), nullable=False),
    Column("camera", String(128), nullable=False),
    Column("zone", String(128)),
    Column("t_event", Float, nullable=False),
    Column("received", Float, nullable=False),
    Column("body", Text, nullable=False),  # the event JSON as the device sent it, without the inline JPEG
    Column("snapshot", String(128)),  # file name under DATA/snapshots/
    Column("clip", String(128)),  # file name under DATA/clips/
    Column("clip_size", BigInteger),
    Column("clip_at", Float),
    Column("acked_by", String(64)),
    Column("acked_at", Float),
    Column("false_alarm", Boolean, nullable=False, default=False),
    Column("note", Text),
)
Index("events_t", events.c.t_event)
Index("events_camera_t", events.c.camera, events.c.t_event)
Index("events_received", events.c.received)

audit = Table(
    "audit", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("t", Float, nullable=False),
    Column("actor", String(160), nullable=False),  # user:NAME | device:ID | system
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("detail", Text),  # JSON
)

artifacts = Table(
    "artifacts", metadata,
    Column("id", String(64), primary_key=True),  # the file's sha256
    Column("kind", String(16), nullable=False),  # image | pack
    Column("name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("site", String(128)),
    Column("device", String(128)),
    Column("board", String(64)),
    Column("version", Integer),
    Column("verified", Boolean),  # signature checked against the VMS's trusted keys (None: no keys)
    Column("meta", Text),  # JSON: manifest summary, cameras and zones from config.json
    Column("uploaded_by", String(160), nullable=False),
    Column("created", Float, nullable=False),
)

pushes = Table(
    "pushes", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("artifact", String(64), nullable=False),
    Column("device", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | done | failed
    Column("message", Text),
    Column("by", String(160), nullable=False),
    Column("created", Float, nullable=False),
    Column("finished", Float),
)

hard_samples = Table(
    "hard_samples", metadata,
    Column("id", String(64), primary_key=True),
    Column("device", String(128), nullable=False),
    Column("camera", String(128), nullable=False),
    Column("t", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(16), nullable=False),  # device | false_alarm
    Column("event_id", String(64)),
    Column("created", Float, nullable=False),
)

flags = Table(
    "flags", metadata,
    Column("scope", String(128), primary_key=True),  # "*" (site-wide), a camera id or a device id
    Column("name", String(64), primary_key=True),  # rain, snow, wind, ...
    Column("value", Boolean, nullable=False),
    Column("set_by", String(160), nullable=False),
    Column("t", Float, nullable=False),
)


def normalise_url(url: str) -> str:
    """``postgresql://`` (and ``postgres://``) mean psycopg 3; anything else is taken as given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url` with the pragmas above; the tables are created if missing."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=8, max_overflow=8)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
