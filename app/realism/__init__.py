"""The published realism report shown on /realism."""
