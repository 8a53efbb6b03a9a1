"""What every clicktrail process builds on: settings, the clock, Redis key names, click ids, ids and
validation, HTTP errors, host rules and ownership, link records, the ClickHouse client with its schema
(numbered migrations) and row contracts, every query, and the generic stream consumer. It imports nothing
of redirector/, attribution/ or the CLI."""
