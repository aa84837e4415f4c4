"""The model registry: registered checkpoints, downloads, checksums, pull jobs."""
