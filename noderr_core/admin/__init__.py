"""Administration core: admin accounts, sessions and login rate limiting (dashboard reads: api/admin/views)."""
