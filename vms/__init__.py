"""The VMS: the server side of sitewarden (``python build.py vms``). See vms/README.md.

Modules: ``db`` (tables, engine), ``store`` (data folder, retention, hard samples), ``auth``
(accounts, sessions, device tokens), ``ingest`` (group-committed idempotent event ingest),
``live`` (SSE), ``routes_events`` / ``routes_fleet`` (the HTTP API), ``app`` (wiring),
``cli`` (the command). ``teacher`` is the distillation loop that reads ``hard_samples/``.
"""
