"""`tracerules serve`: a read-only web dashboard over the store (Starlette, Jinja2, uvicorn)."""
