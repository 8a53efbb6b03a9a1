"""Merchants, catalogs, signed order webhooks, commission rules and the batch attributor."""
