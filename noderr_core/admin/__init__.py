"""Administration core: admin sessions, login rate limiting, and the queries behind the dashboard."""
