"""The Visual Turing Test: study builder, preparation, reading, results, plots (service, API, pages)."""
