"""Comparing few-shot results over training seeds and test tasks.

Two methods tested on the same test tasks after training with the same
seeds give per-task scores `a[s, t]` and `b[s, t]` (seed s, task t). Their
difference `d = a - b` varies with the seed (how training went) and with the
task (how hard it is for one method against the other).
`paired_difference` treats both as random, a crossed two-way design:

    d[s, t] = mu + seed[s] + task[t] + noise[s, t]

The mean of d estimates mu; its variance is
`var_seed / S + var_task / T + var_noise / (S T)`, estimated from the mean
squares of a two-way analysis of variance. The Student t interval takes
S - 1 degrees of freedom: exact when the seed term dominates, wider than
needed when the tasks' term does; Satterthwaite's estimated degrees of
freedom cover less than 95% with 2-3 seeds, and a difference is called a
finding only on firm ground (tests/test_statistics.py checks the coverage
by simulation). With one seed it is the paired t interval
over tasks, which says nothing of other seeds; with one task, the t
interval over seeds. `seed_spread` summarises one method's per-seed
means. numpy only: the Student t quantile is computed here.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """Mean of `a - b` over seeds and tasks, with its `confidence` interval
    `[low, high]`, standard error and degrees of freedom."""

    mean: float
    low: float
    high: float
    standard_error: float
    degrees_of_freedom: float
    seeds: int
    tasks: int
    confidence: float = 0.95

    @property
    def excludes_zero(self):
        return self.low > 0 or self.high < 0

    def verdict(self, name_a, name_b):
        """In three words: `A above B`, `B above A` or `no difference
        shown` (the interval includes zero)."""
        if self.low > 0:
            return f"{name_a} above {name_b}"
        if self.high < 0:
            return f"{name_b} above {name_a}"
        return "no difference shown"

    def finding(self, name_a, name_b, scale=100.0, unit=" points"):
        """The difference in words; it is called a finding only when the
        interval excludes zero, e.g. `ANIL above MAML by 0.8 points (95%
        interval 0.2 to 1.4; 3 seeds x 600 tasks)`."""
        where = (
            f"{100 * self.confidence:.0f}% interval "
            f"{scale * self.low:+.1f} to {scale * self.high:+.1f}; "
            f"{self.seeds} seed{'s' if self.seeds != 1 else ''} x "
            f"{self.tasks} tasks"
        )
        if self.low > 0:
            return (
                f"{name_a} above {name_b} by {scale * self.mean:.1f}{unit} "
                f"({where})"
            )
        if self.high < 0:
            return (
                f"{name_b} above {name_a} by {-scale * self.mean:.1f}{unit} "
                f"({where})"
            )
        return (
            f"{name_a} and {name_b}: no difference shown "
            f"({name_a} - {name_b} = {scale * self.mean:+.1f}{unit}, {where})"
        )

    def as_dict(self):
        return dataclasses.asdict(self)


def paired_difference(a, b, confidence=0.95):
    """The paired difference of two methods' per-task scores.

    Args:
        a, b: `[seeds, tasks]` (or `[tasks]` for one seed) scores of two
            methods: row s of each trained with seed s, column t the same
            test task for both.
        confidence: coverage of the interval.

    Returns:
        A `PairedDifference`.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must pair up (same seeds, same tasks): shapes "
            f"{a.shape} and {b.shape}."
        )
    d = a - b
    if d.ndim == 1:
        d = d.reshape(1, -1)
    if d.ndim != 2 or d.size < 2:
        raise ValueError(
            f"Need [seeds, tasks] scores with at least two values; got "
            f"shape {a.shape}."
        )
    seeds, tasks = d.shape
    mean = float(d.mean())
    if seeds == 1 or tasks == 1:
        values = d.ravel()
        variance = values.var(ddof=1) / values.size
        df = values.size - 1
    else:
        seed_means, task_means = d.mean(axis=1), d.mean(axis=0)
        ms_seed = tasks * np.sum((seed_means - mean) ** 2) / (seeds - 1)
        ms_task = seeds * np.sum((task_means - mean) ** 2) / (tasks - 1)
        residual = d - seed_means[:, None] - task_means[None, :] + mean
        ms_noise = np.sum(residual**2) / ((seeds - 1) * (tasks - 1))
        # Var(mean) is at least what the seed or task mean square alone
        # implies, should the difference estimate a negative component.
        combined = max(ms_seed + ms_task - ms_noise, ms_seed, ms_task)
        df = seeds - 1
        variance = combined / (seeds * tasks)
    se = math.sqrt(max(variance, 0.0))
    half = student_t_quantile(0.5 + confidence / 2, df) * se
    return PairedDifference(
        mean=mean,
        low=mean - half,
        high=mean + half,
        standard_error=se,
        degrees_of_freedom=float(df),
        seeds=seeds,
        tasks=tasks,
        confidence=confidence,
    )


@dataclasses.dataclass(frozen=True)
class SeedSpread:
    """One method's score over training seeds: the mean of the per-seed
    means, their standard deviation (ddof 1; 0 for one seed), range and
    count."""

    mean: float
    std: float
    min: float
    max: float
    seeds: int

    def as_dict(self):
        return dataclasses.asdict(self)


def seed_spread(per_seed):
    """`SeedSpread` of per-seed scores `[seeds]`."""
    values = np.asarray(per_seed, np.float64).ravel()
    if values.size == 0:
        raise ValueError("No seeds to summarise.")
    return SeedSpread(
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        min=float(values.min()),
        max=float(values.max()),
        seeds=int(values.size),
    )


def student_t_quantile(probability, df):
    """The `probability` quantile of Student's t with `df` (> 0, may be
    fractional or inf) degrees of freedom."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}.")
    if math.isinf(df):
        return _normal_quantile(probability)
    if probability < 0.5:
        return -student_t_quantile(1.0 - probability, df)
    low, high = 0.0, 1.0
    while _student_t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2
        if _student_t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _student_t_cdf(t, df):
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2, x = df / (df + t^2)."""
    x = df / (df + t * t)
    return 1.0 - 0.5 * _regularized_beta(x, df / 2, 0.5)


def _regularized_beta(x, a, b):
    """I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    log_front = (
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + a * math.log(x)
        + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def _normal_quantile(probability):
    """The standard normal quantile, by bisection on math.erf."""
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2
