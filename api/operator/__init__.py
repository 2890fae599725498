"""The operator's own pages: page composition and templating (routes in api/routes/operator.py)."""
