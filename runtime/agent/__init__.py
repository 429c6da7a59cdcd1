"""The device agent: receives images and model packs over authenticated HTTP(S), installs them
A/B with rollback, and supervises the runtime. `python -m runtime.agent --help`."""
