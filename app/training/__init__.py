"""Training and evaluation jobs run by admins: specs, child processes, supervisor, results (API, pages)."""
