"""Job handlers for training and evaluation (admin): filled in by the admin work."""
