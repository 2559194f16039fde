"""95 % confidence intervals over cases (LiverTumorSegLib.metrics.bootstrap) and where evaluate reports them
(summary.json's ci95_low / ci95_high, global_dice_ci95, bootstrap; the printed summary). Before, summary.json gave
mean/std/median per metric and no interval, so two models' means over 3-20 test cases could not be told apart.
Known answers: the exact bootstrap distribution of 5 values (all 5^5 resamples enumerated), an independent numpy
implementation with the same seed semantics, linear rescaling, degenerate inputs."""
import itertools
import json
import warnings

import numpy as np
import pytest
from evaluate_helpers import write_evaluate_folders

from LiverTumorSegLib.cli import main
from LiverTumorSegLib.metrics import bootstrap, report
from LiverTumorSegLib.volume import ImageGeometry

DICE = np.array([0.91, 0.95, 0.83, 0.97, 0.88, 0.93, 0.79, 0.96])


def reference_percentile_bootstrap(values, resamples=bootstrap.BOOTSTRAP_RESAMPLES, seed=bootstrap.BOOTSTRAP_SEED):
    """The documented resampling written the plain way: a row of case indices per resample, its mean, the 2.5th
    and 97.5th percentiles."""
    indices = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    return tuple(np.percentile(np.asarray(values)[indices].mean(axis=1), [2.5, 97.5]))


def test_interval_matches_a_plain_implementation_with_the_same_seed_semantics():
    low, high = bootstrap.mean_intervals({"dice_liver": DICE})["dice_liver"]
    expected = reference_percentile_bootstrap(DICE)
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert low < DICE.mean() < high


def exact_quantile(values, p):
    """The p-quantile of the exact bootstrap distribution of the mean: all len(values)^n equally likely resamples."""
    means = np.sort([np.mean(r) for r in itertools.product(values, repeat=len(values))])
    return means[int(np.ceil(p * means.size)) - 1]


def test_interval_bounds_lie_between_the_exact_distributions_quantiles():
    """5 values: 3125 equally likely resamples; with 10,000 draws the 2.5th percentile lies between the exact 2nd
    and 3rd percentiles (a margin of about 3 Monte Carlo standard errors), the 97.5th between the 97th and 98th."""
    values = np.array([0.62, 0.81, 0.88, 0.93, 0.97])
    low, high = bootstrap.mean_intervals({"dice_tumor": values})["dice_tumor"]
    assert exact_quantile(values, 0.02) <= low <= exact_quantile(values, 0.03)
    assert exact_quantile(values, 0.97) <= high <= exact_quantile(values, 0.98)
    # the two exact quantiles differ, so the check is not vacuous
    assert exact_quantile(values, 0.03) - exact_quantile(values, 0.02) > 0.0


def test_interval_contains_the_mean_and_widens_exactly_as_the_values_spread():
    """Values spread twice as far about their mean: the same resamples, so the interval is exactly twice as wide
    about the same mean."""
    spread = DICE.mean() + 2.0 * (DICE - DICE.mean())
    intervals = bootstrap.mean_intervals({"narrow": DICE, "wide": spread})
    (low, high), (wide_low, wide_high) = intervals["narrow"], intervals["wide"]
    assert low < DICE.mean() < high and wide_low < DICE.mean() < wide_high
    assert wide_high - wide_low == pytest.approx(2.0 * (high - low), rel=1e-9)
    assert wide_low == pytest.approx(DICE.mean() + 2.0 * (low - DICE.mean()), abs=1e-12)
    assert 0.04 < high - low < 0.10  # the normal interval, 2 x 1.96 x std / sqrt(8), is 0.087 wide


def test_same_inputs_give_the_same_interval_and_other_columns_do_not_change_it():
    first = bootstrap.mean_intervals({"dice_liver": DICE})["dice_liver"]
    bootstrap.resample_counts.cache_clear()
    assert bootstrap.mean_intervals({"dice_liver": DICE.copy()})["dice_liver"] == first  # bit for bit
    with_others = bootstrap.mean_intervals({"assd_liver_mm": np.r_[np.nan, DICE[1:] * 3], "dice_liver": DICE.copy(),
                                            "hd95_liver_mm": DICE * 10})
    assert with_others["dice_liver"] == pytest.approx(first, abs=1e-14)  # the same resamples; the matrix product's
    # rounding may differ in the last bit with another number of columns
    assert bootstrap.mean_intervals({"dice_liver": DICE}, seed=1)["dice_liver"] != first  # the seed decides


def test_nan_values_are_left_out_as_the_mean_leaves_them_out():
    with_nan = np.r_[np.nan, DICE[:4], np.nan, DICE[4:]]
    assert bootstrap.mean_intervals({"x": with_nan})["x"] == bootstrap.mean_intervals({"x": DICE})["x"]


@pytest.mark.parametrize("values,expected", [
    ([0.9, 0.9, 0.9, 0.9], (0.9, 0.9)),  # all equal: every resample's mean is 0.9
    ([1.0, np.nan, 1.0], (1.0, 1.0)),
    ([0.8], (None, None)),  # one value: no interval
    ([np.nan, np.nan], (None, None)),
    ([], (None, None)),
    ([0.5, np.inf, 0.7], (None, None)),  # the mean is infinite (null in summary.json) and so is no interval
])
def test_degenerate_inputs_give_the_documented_result_without_warnings(values, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap.mean_intervals({"m": np.asarray(values, dtype=float)})["m"] == expected


def test_pooled_dice_interval_resamples_cases_and_pools_their_voxel_counts():
    tp = np.array([90.0, 10.0, 0.0, 45.0, 300.0])
    pred = np.array([100.0, 30.0, 5.0, 50.0, 310.0])
    ref = np.array([95.0, 20.0, 0.0, 60.0, 320.0])
    low, high = bootstrap.pooled_dice_interval(tp, pred, ref)
    indices = np.random.default_rng(bootstrap.BOOTSTRAP_SEED).integers(0, 5, size=(bootstrap.BOOTSTRAP_RESAMPLES, 5))
    dice = 2 * tp[indices].sum(axis=1) / (pred[indices] + ref[indices]).sum(axis=1)
    assert (low, high) == pytest.approx(tuple(np.percentile(dice, [2.5, 97.5])), abs=1e-12)
    pooled = 2 * tp.sum() / (pred.sum() + ref.sum())
    assert low < pooled < high
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap.pooled_dice_interval([0, 0, 0], [0, 0, 0], [0, 0, 0]) == (1.0, 1.0)  # no tumor anywhere
        assert bootstrap.pooled_dice_interval([0, 10], [0, 10], [0, 10]) == (1.0, 1.0)  # one case empty: 1.0 too
        assert bootstrap.pooled_dice_interval([5], [10], [10]) == (None, None)


def rows_of(dice_liver):
    return [{"case": f"c{i}", "dice_liver": d, "voxels_tp_liver": 100 * d, "voxels_pred_liver": 100,
             "voxels_ref_liver": 100} for i, d in enumerate(dice_liver)]


def test_summary_gives_each_mean_its_interval_and_says_how_it_was_taken():
    summary = report.summarize_cases(rows_of(DICE))
    stats = summary["metrics"]["dice_liver"]
    assert (stats["ci95_low"], stats["ci95_high"]) == pytest.approx(reference_percentile_bootstrap(DICE), abs=1e-12)
    # equal case sizes: the pooled Dice is the mean Dice, resample by resample
    pooled = summary["global_dice_ci95"]["liver"]
    assert (pooled["low"], pooled["high"]) == pytest.approx((stats["ci95_low"], stats["ci95_high"]), abs=1e-12)
    assert summary["global_dice_ci95"]["tumor"] == {"low": None, "high": None}  # no tumor counts in these rows
    assert summary["bootstrap"]["method"] == "percentile" and summary["bootstrap"]["resampled_unit"] == "case"
    assert (summary["bootstrap"]["resamples"], summary["bootstrap"]["seed"]) == (10_000, bootstrap.BOOTSTRAP_SEED)
    json.dumps(summary, allow_nan=False)
    # the keys there were before are unchanged; crossval's summary over folds leaves the intervals out
    assert list(stats)[:7] == ["mean", "std", "median", "min", "max", "n", "n_nan"]
    plain = report.summarize_cases(rows_of(DICE), confidence_intervals=False)
    assert "ci95_low" not in plain["metrics"]["dice_liver"] and "bootstrap" not in plain
    assert "global_dice_ci95" not in plain


def test_evaluate_writes_and_prints_the_intervals(tmp_path, capsys):
    """End to end on four tiny label maps: the predictions' liver Dice are 1.0, 0.8, 0.8 and 0.8."""
    references, predictions = {}, {}
    for i in range(4):
        ref = np.zeros((4, 10, 10), np.uint8)
        ref[1:3, 2:7, 2:7] = 1
        pred = ref.copy()
        if i:
            pred[1:3, 2:7, 2:7] = 0
            pred[1:3, 2:7, 3:7] = 1  # 40 of 50 voxels: Dice 2 x 40 / 90
        references[f"c{i}"], predictions[f"c{i}"] = ref, pred
    root = write_evaluate_folders(tmp_path, references, ImageGeometry(spacing=(1.0, 1.0, 2.0)),
                                  predictions=predictions)
    assert main(["evaluate", "--pred", str(root / "pred"), "--ref", str(root / "ref"), "-o", str(root / "out"),
                 "--no-plots", "--no-surface"]) == 0
    summary = json.loads((root / "out" / "summary.json").read_text())
    dice = np.array([1.0] + [80 / 90] * 3)
    stats = summary["metrics"]["dice_liver"]
    assert (stats["ci95_low"], stats["ci95_high"]) == pytest.approx(reference_percentile_bootstrap(dice), abs=1e-9)
    assert stats["ci95_low"] < stats["mean"] < stats["ci95_high"]
    assert summary["metrics"]["dice_tumor"]["ci95_low"] == summary["metrics"]["dice_tumor"]["ci95_high"] == 1.0
    assert summary["global_dice_ci95"]["tumor"] == {"low": 1.0, "high": 1.0}  # no tumor anywhere: LiTS's 1.0
    assert summary["bootstrap"]["seed"] == bootstrap.BOOTSTRAP_SEED
    printed = capsys.readouterr().out
    assert f"dice_liver: mean {stats['mean']:.4f} (95 % CI {stats['ci95_low']:.4f} to {stats['ci95_high']:.4f})" \
        in printed
    assert "percentile bootstrap over cases, 10000 resamples" in printed
