"""A runtime stand-in for the kill -9 test: emits events to an HTTP sink through the outbox.

    python helpers_emitter_child.py STATE URL N emit|drain [PACE_S]

emit: emits events 0..N-1 (printing "emitted I" once emit() has returned), then drains;
drain: only drains. Prints "drained" when every sink has every event.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.config import SinkConfig  # noqa: E402
from runtime.events import Event  # noqa: E402
from runtime.outbox import Emitter  # noqa: E402


def event(i: int) -> Event:
    return Event.create(type="zone_intrusion", site="kill-site", device="edge-1", camera="cam-1", zone="pit",
                        track=i, t_start=1_790_000_000.0 + i, severity="critical", confidence=0.9)


def main() -> int:
    state, url, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    pace = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    sink = SinkConfig("http", {"target": url, "token": "t0k", "timeout_s": 5.0})
    em = Emitter([sink], state, backoff=(0.05, 0.5))
    if mode == "emit":
        for i in range(n):
            em.emit(event(i))
            print(f"emitted {i}", flush=True)
            time.sleep(pace)
    if not em.drain(60):
        return 1
    print("drained", flush=True)
    em.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
