"""The `clicktrail` command: builds the settings once and starts the process asked for (serve, ingest,
attribute, ...). The top layer: it wires redirector/ and attribution/, and nothing imports it."""
