-- A link version's smart-link fields (rules, variants, expires_at, max_clicks, expired_url) as the API
-- shows them, JSON; '' for a plain link. Every PATCH is a new version (a new row, a later updated_at_ms).
ALTER TABLE {db}.links ADD COLUMN smart String DEFAULT '';
