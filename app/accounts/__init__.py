"""Accounts: users, passwords, server-side sessions, API tokens, throttling (service, API, pages)."""
