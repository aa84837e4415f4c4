"""SynTumor's science library: CT volumes, phantoms, tumor synthesis, segmentation.

Nothing here imports the web application, reads environment variables, prints, or touches
global random state; every random function takes a ``numpy.random.Generator``.
"""

__version__ = "0.1.0"
