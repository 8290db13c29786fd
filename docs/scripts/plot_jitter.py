"""Plot the delay distributions of each jitter kind for docs/retry.md.

Run from the repository root (needs the ``docs`` extra, for matplotlib):

    python docs/scripts/plot_jitter.py            # writes docs/img/retry_jitter.png

Every sample comes from ``RetryPolicy.delay`` itself, with a seeded
``random.Random``, so the picture is reproducible and shows what the code does.
Decorrelated jitter is sampled along whole retry sequences, since each delay
depends on the one before.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from chatsvg_core.retry import Jitter, RetryPolicy

ATTEMPTS = 8
SEQUENCES = 2000


def samples(policy: RetryPolicy, rng: random.Random) -> list[list[float]]:
    """``SEQUENCES`` delays after each failed attempt 1..ATTEMPTS."""
    per_attempt: list[list[float]] = [[] for _ in range(ATTEMPTS)]
    for _ in range(SEQUENCES):
        previous: float | None = None
        for attempt in range(1, ATTEMPTS + 1):
            previous = policy.delay(attempt, rng=rng, previous=previous)
            per_attempt[attempt - 1].append(previous)
    return per_attempt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/img/retry_jitter.png"))
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    base = RetryPolicy(initial_delay=0.5, multiplier=2, max_delay=30)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True, sharey=True)
    attempts = list(range(1, ATTEMPTS + 1))
    bounds = [base.backoff_bound(a) for a in attempts]
    for ax, kind in zip(axes.flat, list(Jitter), strict=True):
        policy = RetryPolicy.model_validate({**base.model_dump(), "jitter": kind})
        data = samples(policy, random.Random(args.seed))
        ax.violinplot(data, positions=attempts, showextrema=False, widths=0.8)
        means = [sum(d) / len(d) for d in data]
        ax.plot(attempts, bounds, "k--", lw=1, label="exponential bound (no jitter)")
        ax.plot(attempts, means, "o-", color="tab:red", ms=3, lw=1, label="mean delay")
        ax.axhline(policy.max_delay, color="grey", lw=0.8, ls=":", label="max_delay")
        ax.set_title(f'jitter="{kind.value}"')
        ax.set_xticks(attempts)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("failed attempt n (delay before attempt n + 1)")
    for ax in axes[:, 0]:
        ax.set_ylabel("delay (s)")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(
        "RetryPolicy delays: initial_delay=0.5 s, multiplier=2, max_delay=30 s "
        f"({SEQUENCES} seeded sequences each)"
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
