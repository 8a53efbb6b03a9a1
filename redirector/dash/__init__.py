"""The web dashboard under /dash: server-rendered pages (Starlette + Jinja2) for creators, merchants and
the admin, signed in with an API key. Served by the API app, never by the redirect's hot path."""
