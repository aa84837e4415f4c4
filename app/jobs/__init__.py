"""Jobs: the job table's one way in (enqueue), the worker that runs them, the job API."""
