"""HTTP edge: the Starlette app, JSON:API, /action, /_config, /openapi."""
