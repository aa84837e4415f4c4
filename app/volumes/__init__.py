"""Volumes: stored CT and label maps, the upload scan, storage (service, API, pages)."""
