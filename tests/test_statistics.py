"""Paired differences over seeds and tasks, against scipy and simulation."""

import numpy as np
import pytest
import scipy.stats

from keras_meta import statistics

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("df", [1, 2, 2.5, 7, 599, 1e7])
@pytest.mark.parametrize("probability", [0.6, 0.975, 0.995, 0.025])
def test_student_t_quantile_matches_scipy(df, probability):
    assert statistics.student_t_quantile(probability, df) == pytest.approx(
        scipy.stats.t.ppf(probability, df), rel=1e-7, abs=1e-9
    )


def test_one_seed_is_the_paired_t_interval_over_tasks():
    a, b = RNG.random(600), RNG.random(600)
    result = statistics.paired_difference(a[None], b[None])
    interval = scipy.stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (result.seeds, result.tasks) == (1, 600)
    assert result.mean == pytest.approx(np.mean(a - b))
    assert result.low == pytest.approx(interval.low)
    assert result.high == pytest.approx(interval.high)
    # A 1-D pair of task scores is one seed.
    assert statistics.paired_difference(a, b) == result


def test_one_task_is_the_t_interval_over_seeds():
    a, b = RNG.normal(size=(5, 1)), RNG.normal(size=(5, 1))
    result = statistics.paired_difference(a, b)
    d = (a - b).ravel()
    interval = scipy.stats.t.interval(
        0.95, 4, loc=d.mean(), scale=scipy.stats.sem(d)
    )
    assert (result.low, result.high) == pytest.approx(interval)


def test_variance_of_the_mean_from_the_two_way_mean_squares():
    # Written out from the sums of squares, one cell at a time.
    d = RNG.normal(size=(3, 40)) + RNG.normal(size=(3, 1))
    seeds, tasks = d.shape
    grand = d.sum() / d.size
    row = [sum(d[s]) / tasks for s in range(seeds)]
    col = [sum(d[:, t]) / seeds for t in range(tasks)]
    ss_seed = tasks * sum((r - grand) ** 2 for r in row)
    ss_task = seeds * sum((c - grand) ** 2 for c in col)
    ss_noise = sum(
        (d[s, t] - row[s] - col[t] + grand) ** 2
        for s in range(seeds)
        for t in range(tasks)
    )
    ms = (
        ss_seed / (seeds - 1),
        ss_task / (tasks - 1),
        ss_noise / ((seeds - 1) * (tasks - 1)),
    )
    variance = max(ms[0] + ms[1] - ms[2], ms[0], ms[1]) / d.size
    result = statistics.paired_difference(d, np.zeros_like(d))
    half = scipy.stats.t.ppf(0.975, seeds - 1) * np.sqrt(variance)
    assert result.standard_error == pytest.approx(np.sqrt(variance))
    assert (result.low, result.high) == pytest.approx(
        (grand - half, grand + half)
    )


@pytest.mark.parametrize(
    "seed_sd, task_sd", [(1.0, 1.0), (0.3, 1.0), (0.0, 1.0), (1.0, 0.0)]
)
def test_the_interval_covers_the_true_difference(seed_sd, task_sd):
    # d[s, t] = mu + seed + task + noise, 3 seeds x 200 tasks: the 95%
    # interval must cover mu at least 95% of the time (up to simulation
    # noise), whichever term dominates.
    rng, mu, trials, covered = np.random.default_rng(1), 0.5, 1500, 0
    for _ in range(trials):
        d = (
            mu
            + seed_sd * rng.normal(size=(3, 1))
            + task_sd * rng.normal(size=(1, 200))
            + rng.normal(size=(3, 200))
        )
        result = statistics.paired_difference(d, np.zeros_like(d))
        covered += result.low <= mu <= result.high
    assert covered / trials >= 0.94


def test_findings_are_worded_only_when_the_interval_excludes_zero():
    a = np.full((3, 50), 0.9) + RNG.normal(0, 0.01, (3, 50))
    b = a - 0.05
    above = statistics.paired_difference(a, b)
    assert above.excludes_zero
    assert above.finding("ANIL", "MAML").startswith("ANIL above MAML by 5.0")
    assert above.verdict("ANIL", "MAML") == "ANIL above MAML"
    below = statistics.paired_difference(b, a)
    assert below.finding("MAML", "ANIL").startswith("ANIL above MAML")
    noise = RNG.normal(0, 0.1, (3, 50))
    same = statistics.paired_difference(a + noise - noise.mean(), a)
    assert not same.excludes_zero and same.mean == pytest.approx(0.0)
    assert same.finding("A", "B").startswith("A and B: no difference shown")
    assert same.verdict("A", "B") == "no difference shown"


def test_seed_spread_matches_numpy():
    values = [0.961, 0.955, 0.968]
    spread = statistics.seed_spread(values)
    assert spread.mean == pytest.approx(np.mean(values))
    assert spread.std == pytest.approx(np.std(values, ddof=1))
    assert (spread.min, spread.max, spread.seeds) == (0.955, 0.968, 3)
    assert statistics.seed_spread([0.9]).std == 0.0


def test_mismatched_pairs_are_refused():
    with pytest.raises(ValueError, match="must pair up"):
        statistics.paired_difference(np.zeros((3, 10)), np.zeros((2, 10)))
