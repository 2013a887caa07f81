"""Logging inside Ray actors, without configuring anyone else's logging.

A Ray actor process starts with no handler on the root logger, so the package's INFO lines
(batches, restarts, neutral rewards) would vanish. Library code must not call
``logging.basicConfig`` (it would take over the user's root logger), so actors call
:func:`ensure_package_handler`, which gives only the ``openrlhf_visualprm`` logger a stderr
handler, and only when nothing else would print its records.
"""

from __future__ import annotations

import logging

PACKAGE_LOGGER = "openrlhf_visualprm"
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def ensure_package_handler(level: int = logging.INFO) -> None:
    """Attach a stderr handler to the package logger if neither it nor the root logger has one."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
