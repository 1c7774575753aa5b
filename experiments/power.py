"""Power calculation for the searched-vs-random study (issue 26), from round 1's variance estimates.

    python -m experiments.power docs/results_round1.md                      # the estimates and the design table
    python -m experiments.power docs/results_round1.md --design 8x4,24x2    # one design: searched archs x seeds, random archs x seeds

Round 1's "Every arm" table (docs/results_round1.md) gives, per arm, the val mIoU mean ± SD over its training
seeds. Two variance components come out of it:

* training-seed variance sigma_e^2: the pooled within-arm variance of the arms with >= 2 seeds
  (weighted by their degrees of freedom; the mean of the SDs is biased low);
* architecture variance sigma_a^2: the variance of the random arms' means minus what seed noise
  alone puts into a mean of n seeds (method of moments, floored at 0).

The endpoint is the difference of architecture-level means, searched - random. With a searched
architectures trained with k seeds each and b random ones with m seeds each,

    Var(diff) = (sigma_a^2 + sigma_e^2 / k) / a + (sigma_a^2 + sigma_e^2 / m) / b

and the minimal detectable effect of a one-sided test at level alpha with power 1 - beta is
(z_{1-alpha} + z_{1-beta}) * sqrt(Var(diff)) (normal approximation; with a dozen or more
architectures per group Welch's t is close to it).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.stats import pooled_variance

Z = statistics.NormalDist()
DESIGNS = ("2x2,8x1", "6x2,18x1", "6x3,18x2", "8x3,24x2", "8x4,24x2", "8x4,24x3", "10x4,30x3")


@dataclass(frozen=True)
class Arm:
    name: str
    group: str
    seeds: int
    mean: float
    sd: float | None


@dataclass(frozen=True)
class Components:
    """Variance components in mIoU points^2 and what they were estimated from."""

    seed_var: float
    arch_var: float
    seed_df: int
    random_arms: int


def read_arms(page: Path) -> list[Arm]:
    """The rows of the "Every arm" table: name, group, seeds, mean and SD of the val mIoU (%)."""
    try:
        text = page.read_text()
    except OSError as err:
        raise SystemExit(f"power: error: cannot read {page}: {err.strerror}") from None
    arms = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[3].isdigit():
            continue
        m = re.fullmatch(r"(-?[\d.]+)(?:\s*±\s*([\d.]+))?", cells[4])
        if m:
            sd = float(m.group(2)) if m.group(2) else None
            arms.append(Arm(cells[0], cells[1], int(cells[3]), float(m.group(1)), sd))
    if not arms:
        raise SystemExit(f"power: error: {page} has no arm table (| arm | group | what | seeds | mIoU | ...)")
    return arms


def components(arms: list[Arm]) -> Components:
    """Pooled training-seed variance (searched + random arms) and the random arms' architecture variance."""
    study = [a for a in arms if a.group in ("searched", "random")]
    pooled = pooled_variance([(a.seeds, a.sd) for a in study if a.sd is not None])
    if pooled is None:
        raise SystemExit("power: error: no searched or random arm has >= 2 seeds: the seed variance is unknown")
    seed_var, df = pooled
    random = [a for a in arms if a.group == "random"]
    if len(random) < 2:
        raise SystemExit("power: error: fewer than 2 random arms: the architecture variance is unknown")
    between = statistics.variance([a.mean for a in random])
    noise = statistics.fmean(seed_var / a.seeds for a in random)
    return Components(seed_var, max(0.0, between - noise), df, len(random))


def parse_design(text: str) -> tuple[int, int, int, int]:
    """ "AxK,BxM" -> (A searched archs, K seeds each, B random archs, M seeds each)."""
    m = re.fullmatch(r"(\d+)x(\d+),(\d+)x(\d+)", text.replace(" ", ""))
    if not m or 0 in (nums := tuple(int(g) for g in m.groups())):
        raise SystemExit(
            f"power: error: --design {text}: write SEARCHEDxSEEDS,RANDOMxSEEDS with numbers >= 1, e.g. 8x4,24x2"
        )
    return nums  # type: ignore[return-value]


def se_of_difference(c: Components, a: int, k: int, b: int, m: int) -> float:
    return math.sqrt((c.arch_var + c.seed_var / k) / a + (c.arch_var + c.seed_var / m) / b)


def mde(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable effect of a one-sided test (normal approximation)."""
    return (Z.inv_cdf(1 - alpha) + Z.inv_cdf(power)) * se


def power_at(se: float, effect: float, alpha: float = 0.05) -> float:
    """Power of the one-sided test to detect `effect` points."""
    return 1 - Z.cdf(Z.inv_cdf(1 - alpha) - effect / se)


def table(c: Components, designs: list[str], effect: float, train_cpu_min: float | None) -> str:
    lines = [
        f"Round 1: training-seed SD {math.sqrt(c.seed_var):.2f} points (pooled, {c.seed_df} df); "
        f"architecture SD {math.sqrt(c.arch_var):.2f} points ({c.random_arms} random arms, method of moments).",
        "",
        "| design (searched archs x seeds, random archs x seeds) | trainings | SE of the difference | "
        f"minimal detectable effect (one-sided 5 %, power 80 %) | power at +{effect:g} |"
        + (" CPU h (train) |" if train_cpu_min else ""),
        "|---|---|---|---|---|" + ("---|" if train_cpu_min else ""),
    ]
    for d in designs:
        a, k, b, m = parse_design(d)
        se = se_of_difference(c, a, k, b, m)
        n = a * k + b * m
        cpu = f" {n * train_cpu_min / 60:.1f} |" if train_cpu_min else ""
        lines.append(f"| {a}x{k}, {b}x{m} | {n} | {se:.2f} | {mde(se):.2f} | {power_at(se, effect):.2f} |{cpu}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.power", description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path, help="round 1's results page (docs/results_round1.md)")
    p.add_argument("--design", action="append", help="SEARCHEDxSEEDS,RANDOMxSEEDS (repeatable); default: a ladder")
    p.add_argument("--effect", type=float, default=1.0, help="the effect the study is powered for (points)")
    p.add_argument("--train-cpu-min", type=float, default=None, help="CPU minutes of one training + eval run")
    args = p.parse_args(argv)
    print(table(components(read_arms(args.page)), args.design or list(DESIGNS), args.effect, args.train_cpu_min))
    return 0


if __name__ == "__main__":
    sys.exit(main())
