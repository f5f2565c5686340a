"""
The garbage collector in a server process.

A full collection walks every object the collector tracks and holds the
reactor thread meanwhile: a process that has imported Twisted and tmail
tracks some 50,000 objects before it serves anyone, and each full
collection walking them costs 25 ms or more, a pause every session of the
process waits for.  Those objects live as long as the process, so once it
has started they are collected one last time and frozen (C{gc.freeze}):
later collections walk only what serving made.
"""

from __future__ import annotations

import gc


def freezeStartupObjects() -> int:
    """
    Collect once, then move every tracked object into the permanent
    generation, which collections skip; returns how many were moved.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
