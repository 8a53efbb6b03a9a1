-- The in-app browser (redirector/inapp_tokens.toml: tiktok, instagram, facebook, ...) that opened a link
-- with open_in = "browser" and got the escape page; '' for every other click (other links never look at
-- the user agent on the redirect path). Old rows read as ''.
ALTER TABLE {db}.clicks ADD COLUMN inapp String DEFAULT '';
