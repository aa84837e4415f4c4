"""Processing: segmentation and synthesis requests on stored volumes (service, API, pages, playground)."""
