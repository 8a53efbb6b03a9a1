"""The ingest process's code, and nothing of the server's: streams (clicks, link events, and the order
events attribution hands it) into ClickHouse, exactly once, with click enrichment and the unique flag.
Run by `clicktrail ingest`; the redirect server never imports this package (an import-linter contract)."""
