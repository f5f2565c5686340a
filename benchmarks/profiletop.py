"""
Summarise a profile of tmail taken with C{run.py --profile-tmail DIR}.

    python benchmarks/profiletop.py DIR/imap-client-mix-1.prof [--top 10]

Prints two Markdown tables: tmail's functions by cumulative time and every
function by own time, each as a share of the reactor's time (C{mainLoop}),
and how much of that time the reactor spent waiting in C{epoll}, i.e. idle.
cProfile sees the reactor thread only; work handed to threads is not in it.
"""

from __future__ import annotations

import argparse
import pstats
import sys

Key = tuple[str, int, str]


def label(key: Key) -> str:
    path, line, name = key
    if path == "~":
        return name
    short = path.split("/src/", 1)[-1].split("/site-packages/", 1)[-1]
    return f"`{short}:{line}` {name}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    stats: dict[Key, tuple[int, int, float, float, object]] = pstats.Stats(args.profile).stats  # type: ignore[attr-defined]
    loop = next(v[3] for k, v in stats.items() if k[2] == "mainLoop")
    idle = sum(v[2] for k, v in stats.items() if "poll' of 'select.epoll" in k[2])
    print(f"reactor time {loop:.1f} s, of which waiting in epoll {100 * idle / loop:.1f}%\n")
    print("| function | calls | cumulative s | cumulative % |\n|---|---|---|---|")
    ours = sorted(((k, v) for k, v in stats.items() if "/tmail/" in k[0]), key=lambda kv: -kv[1][3])
    for key, (_, calls, _, cumulative, _) in ours[: args.top]:
        print(f"| {label(key)} | {calls:,} | {cumulative:.2f} | {100 * cumulative / loop:.1f} |")
    print("\n| function (own time) | calls | own s | own % |\n|---|---|---|---|")
    for key, (_, calls, own, _, _) in sorted(stats.items(), key=lambda kv: -kv[1][2])[: args.top]:
        print(f"| {label(key)} | {calls:,} | {own:.2f} | {100 * own / loop:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
