"""The click path: redirect, link store and cache, durable click recording, click ingestion."""
