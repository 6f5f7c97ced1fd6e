"""The operator's side of station telemetry: the MQTT subscriber that stores what stations
report in SQLite (``swapstation backend``) and signed remote commands (``swapstation ops``).
Topics, payloads and the database schema: docs/telemetry.md."""
