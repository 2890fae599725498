"""The admin dashboard's web layer: session dependencies, CSRF, templating, charts and pages."""
