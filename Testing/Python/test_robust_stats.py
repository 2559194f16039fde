"""robust_std: the normal noise's standard deviation from the median absolute deviation, known answers."""
import numpy as np
import pytest

from LiverTumorSegLib.robust_stats import MAD_TO_SD, robust_std


def test_known_median_absolute_deviation():
    # median 3, absolute deviations 2, 1, 0, 1, 97 -> their median 1
    assert robust_std(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(MAD_TO_SD)
    assert MAD_TO_SD == pytest.approx(1.0 / 0.6744897501960817, abs=1e-4)


def test_normal_noise_reads_its_standard_deviation_and_outliers_do_not_move_it():
    rng = np.random.default_rng(20261202)
    noise = rng.normal(40.0, 12.0, size=200_000)
    assert robust_std(noise) == pytest.approx(12.0, rel=0.02)
    with_vessels = noise.copy()
    with_vessels[:10_000] = 250.0          # 5 % bright outliers
    assert robust_std(with_vessels) == pytest.approx(12.0, rel=0.10)
    assert float(np.std(with_vessels)) > 40.0  # the plain standard deviation is carried off


def test_too_few_values_and_shape():
    assert robust_std(np.array([5.0])) == 0.0
    assert robust_std(np.zeros((0,))) == 0.0
    grid = np.arange(9, dtype=np.float32).reshape(3, 3)   # read flat: median 4, deviations median 2
    assert robust_std(grid) == pytest.approx(2.0 * MAD_TO_SD)
