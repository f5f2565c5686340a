"""C{python -m tmail.workers}: one worker process, as its supervisor starts it."""

from tmail.workers.worker import main

main()
