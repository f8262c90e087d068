"""Draws scripts/soak's samples (JSON on stdin) into a PNG, in its own venv (.venv-plot, `scripts/setup --bench`).

matplotlib stays out of the daemon's venv: with numpy installed there, sqlite-utils imports it in the daemon
(10 MiB more RSS than on a gateway), and the soak would measure a daemon no store runs.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    job = json.load(sys.stdin)
    rows, outages = job["rows"], job["outages"]
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    t = [r["t"] / 60 for r in rows]
    for ax, key, label in zip(axes, ("rss", "cpu", "fds", "depth"),
                              ("RSS (MiB)", "CPU (% of a core)", "open files", "outbox depth (events)"), strict=True):
        ax.plot(t, [r[key] for r in rows], lw=1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        for a, b in outages:
            ax.axvspan(a / 60, b / 60, color="orange", alpha=0.15)
    axes[-1].set_xlabel("minutes (orange: broker away)")
    fig.suptitle(job["title"])
    fig.tight_layout()
    fig.savefig(job["path"], dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
