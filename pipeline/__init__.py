"""gov-topics: tag Chinese government news and reports by theme.

The package is organised by pipeline stage (``ingest``, ``segment``, ``features``, ``train``,
``evaluate``, ``registry``, ``predict``); ``cli`` is a thin layer over them.
"""

__version__ = "0.1.0"
