"""Device-side hard-sample uploads: frames the student was unsure about go to the VMS teacher.

Every frame the pipeline processes is offered (:meth:`HardSampleUploader.offer`) with the
detector's person scores and the tracker's confirmed people; :mod:`runtime.hardsample` decides
(uncertain best score, or detector and tracker disagreeing) and rate-limits per camera. A chosen
frame is JPEG-encoded (heads blurred, as snapshots are) and queued; a daemon thread POSTs it to
the VMS's ``/api/hard-samples`` beside the http sink's ``/api/events``, with that sink's token.

Policy (stated): hard samples are a training aid, not alarms, so delivery is **best effort** -
at most :data:`FIELD_POLICY.min_interval_s` between uploads per camera, a bounded in-memory
queue (:data:`MAX_QUEUE`; when full the oldest waiting sample is dropped and counted), a few
retries with backoff, nothing written to disk. Events keep their own durable outbox. The sample
id is derived from (device, camera, t, reason), so a retried upload is stored once by the VMS.
Stdlib + numpy (+ OpenCV for the JPEG, as snapshots).
"""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request

import numpy as np

from .hardsample import HardSamplePolicy, HardSampleSelector
from .vmsflags import beside_events, vms_sink

log = logging.getLogger("sitewarden.hardupload")

FIELD_POLICY = HardSamplePolicy(min_interval_s=10.0)  # a device: one sample per camera per 10 s at most
MAX_QUEUE = 16
RETRIES = 3


def samples_url(events_url: str) -> str:
    """``<scheme>://<host>/api/hard-samples`` beside the VMS's ``/api/events``."""
    return beside_events(events_url, "hard-samples")


class HardSampleUploader:
    def __init__(self, url: str, token: str | None, device: str, policy: HardSamplePolicy = FIELD_POLICY,
                 timeout_s: float = 5.0, backoff_s: float = 2.0):
        self.url, self.token, self.device = url, token, device
        self.selector = HardSampleSelector(policy)
        self.timeout_s, self.backoff_s = timeout_s, backoff_s
        self.queue: collections.deque = collections.deque()
        self.sent = self.dropped = self.failed = 0  # failed: refused, or out of retries
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hard-samples", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config, **kw) -> "HardSampleUploader | None":
        """From the config's first http sink (the VMS); None when there is none."""
        http = vms_sink(config)
        if http is None:
            return None
        return cls(samples_url(str(http.params["target"])), http.params.get("token"), config.device, **kw)

    def offer(self, camera: str, t: float, t_epoch: float, image: np.ndarray, scores, n_tracks: int,
              xyxy=()) -> str | None:
        """Called per frame with the student's person scores and boxes (xyxy, same order); queues
        the frame when the selector picks it. Returns the reason or None."""
        reason = self.selector.offer(camera, t, scores, n_tracks)
        if reason is None:
            return None
        from .events import snapshot_jpeg
        from .ppe import head_boxes

        b = np.column_stack([np.asarray(xyxy, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)])
        jpeg = snapshot_jpeg(image, head_boxes(b[:, :4], image.shape) if len(b) else ())
        sample_id = hashlib.sha256("\x1f".join(("hard-sample-v1", self.device, camera, repr(round(t_epoch, 3)),
                                                reason)).encode()).hexdigest()[:32]
        body = {"id": sample_id, "camera": camera, "t": round(t_epoch, 3), "reason": reason,
                "boxes": [[round(float(v), 2) for v in row] for row in b],
                "jpeg_base64": base64.b64encode(jpeg).decode("ascii")}
        with self._cv:
            if len(self.queue) >= MAX_QUEUE:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(json.dumps(body).encode())
            self._cv.notify()
        return reason

    def _post(self, payload: bytes) -> str:
        """"sent", "refused" (a 4xx that a retry cannot fix) or "retry"."""
        req = urllib.request.Request(self.url, data=payload, method="POST", headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return "sent" if 200 <= r.status < 300 else "retry"
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in (404, 408, 429):
                log.warning("hard sample refused by %s: HTTP %s (dropped)", self.url, e.code)
                return "refused"
            return "retry"
        except (urllib.error.URLError, OSError):
            return "retry"

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self.queue and not self._stop:
                    self._cv.wait()
                if self._stop and not self.queue:
                    return
                payload = self.queue.popleft()
            for attempt in range(RETRIES):
                verdict = self._post(payload)
                if verdict != "retry":
                    self.sent += verdict == "sent"
                    self.failed += verdict == "refused"
                    break
                if self._stop:
                    self.failed += 1
                    break
                time.sleep(self.backoff_s * (2 ** attempt))
            else:
                self.failed += 1

    def close(self, timeout: float = 5.0) -> None:
        """Stop after what is queued (bounded by `timeout`)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)
