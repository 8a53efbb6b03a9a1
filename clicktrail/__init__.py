"""Shared pieces of clicktrail: settings, Redis key names, click ids, ClickHouse client and schema."""
