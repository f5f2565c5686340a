"""
Replay one input in a process of its own (see L{support.fuzzing.replayAlone}):
reads C{(kind, state, chunks, seconds, memory)} pickled on standard input,
prints the problems found, exits 0 if none.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.budget import Budget
from support.fuzzing import replay
from support.mailworld import MailWorld, scratchRoot
from tmail.directory.passwords import cheapHasher, setHasher


def main() -> int:
    kind, state, chunks, seconds, memory = pickle.loads(sys.stdin.buffer.read())
    setHasher(cheapHasher())
    world = MailWorld(scratchRoot())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        replay(world, kind, state, chunks, Budget(seconds, memory))
    except AssertionError as e:
        print(str(e)[-4000:])
        return 1
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
