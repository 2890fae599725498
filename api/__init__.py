"""The control-plane HTTP API (FastAPI): thin routers over noderr_core."""
