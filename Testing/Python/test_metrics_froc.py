"""Lesion FROC (metrics.froc): hits, confidences and the operating points against counts made by hand."""
import math

import numpy as np
import pytest

from LiverTumorSegLib.metrics.froc import CaseLesionHits, froc_curve, froc_line, lesion_hits


def cube(mask, z, y, x, size=3):
    mask[z:z + size, y:y + size, x:x + size] = True


def case_a():
    """Reference lesions R0 (a long bar at y 2..4, x 0..22) and R1 (a cube at y 12); predicted cubes: on R0 at x 0
    (p 0.9) and at x 20 (p 0.7), one at y 7 touching nothing (p 0.8), and one half on R1 (p 0.6)."""
    shape = (4, 16, 26)
    ref, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    prob = np.zeros(shape, np.float32)
    ref[0:3, 2:5, 0:23] = True  # R0: a long lesion at y 2..4
    cube(ref, 0, 12, 0)  # R1
    for (y, x, p) in ((2, 0, 0.9), (7, 0, 0.8), (12, 1, 0.6), (2, 20, 0.7)):
        cube(pred, 0, y, x)
        prob[0:3, y:y + 3, x:x + 3] = p
    return pred, ref, prob


def test_hits_and_confidences_of_one_case():
    pred, ref, prob = case_a()
    hits = lesion_hits(pred, ref, prob)
    assert hits.n_ref == 2
    # components in raster order of their first voxel: (y2,x0), (y2,x20), (y7,x0), (y12,x1)
    np.testing.assert_allclose(hits.confidences, [0.9, 0.7, 0.8, 0.6], rtol=1e-6)
    assert hits.hits.tolist() == [0, 0, -1, 1]


def test_uint8_probability_levels_are_divided():
    pred, ref, prob = case_a()
    levels = np.rint(prob * 255).astype(np.uint8)
    hits = lesion_hits(pred, ref, levels, divisor=255.0)
    np.testing.assert_allclose(hits.confidences, np.rint(np.array([0.9, 0.7, 0.8, 0.6]) * 255) / 255, rtol=1e-9)


def test_a_prediction_on_two_references_hits_the_one_it_shares_most_with():
    ref, pred = np.zeros((3, 10, 20), bool), np.zeros((3, 10, 20), bool)
    ref[0:3, 0:3, 0:3] = True  # R0: 27 voxels
    ref[0:3, 0:3, 6:12] = True  # R1: 54 voxels
    pred[0:3, 0:3, 1:10] = True  # shares 18 with R0, 36 with R1
    hits = lesion_hits(pred, ref, pred.astype(np.float32) * 0.5)
    assert hits.hits.tolist() == [1] and hits.n_ref == 2
    np.testing.assert_allclose(hits.confidences, [0.5])


def test_two_lesions_one_prediction_spans_are_both_detected_but_one_is_hit():
    """The docs said a lesion detected by detect_lesions (IoU > 0.5) is always hit in the FROC; for reference lesions
    one prediction merges it is not: the prediction hits only the one it shares most voxels with (docs now say so)."""
    from LiverTumorSegLib.metrics.lits import detect_lesions

    ref, pred = np.zeros((6, 30, 30), bool), np.zeros((6, 30, 30), bool)
    ref[1:5, 2:12, 2:12] = True  # a large lesion
    ref[1:5, 2:12, 14:17] = True  # a small one beside it
    pred[1:5, 2:12, 2:17] = True  # one prediction over both (IoU of the merged group 0.87)
    detection = detect_lesions(pred, ref, 0.5, 26)
    assert (detection.detected, detection.ref_lesions, detection.false_positive) == (2, 2, 0)
    hits = lesion_hits(pred, ref, pred.astype(np.float32) * 0.9)
    assert hits.hits.tolist() == [0] and hits.n_ref == 2
    assert froc_curve([hits]).sensitivity.max() == 0.5


def test_mean_probability_is_over_the_lesion_voxels_only():
    ref, pred = np.zeros((2, 8, 8), bool), np.zeros((2, 8, 8), bool)
    pred[0, 0:2, 0:2] = True  # 4 voxels
    prob = np.zeros((2, 8, 8), np.float32)
    prob[0, 0, 0:2], prob[0, 1, 0:2] = 1.0, 0.2
    prob[1] = 0.9  # outside the lesion: does not count
    hits = lesion_hits(pred, ref, prob)
    np.testing.assert_allclose(hits.confidences, [0.6], rtol=1e-6)
    assert hits.hits.tolist() == [-1] and hits.n_ref == 0


def test_curve_by_hand():
    """Case A: references R0, R1; lesions 0.9 -> R0, 0.8 false, 0.7 -> R0 again, 0.6 -> R1. Case B: reference R2;
    lesions 0.95 false, 0.5 -> R2. Three reference lesions, two cases. Thresholds from the top:
    0.95: 0/3, 1 FP; 0.9: 1/3, 1; 0.8: 1/3, 2; 0.7: 1/3, 2 (a second hit on R0 is no FP); 0.6: 2/3, 2; 0.5: 3/3, 2."""
    a = CaseLesionHits(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, -1, 0, 1]), 2)
    b = CaseLesionHits(np.array([0.95, 0.5]), np.array([-1, 0]), 1)
    curve = froc_curve([a, b])
    assert curve.thresholds[0] == math.inf and curve.thresholds[1:].tolist() == [0.95, 0.9, 0.8, 0.7, 0.6, 0.5]
    np.testing.assert_allclose(curve.sensitivity, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.fp_per_case, [0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])
    assert (curve.n_cases, curve.n_ref_lesions, curve.n_pred_lesions) == (2, 3, 6)
    # highest sensitivity with at most r FP per case: 0 below 0.5, 1/3 at 0.5, all three from 1 on
    assert [curve.sensitivity_at(r) for r in (0.125, 0.25, 0.5, 1, 2, 4, 8)] == pytest.approx(
        [0, 0, 1 / 3, 1, 1, 1, 1])
    summary = curve.summary()
    assert summary["mean_sensitivity"] == pytest.approx((1 / 3 + 4) / 7)
    assert summary["sensitivity_at_fp_per_case"]["0.125"] == 0 and summary["points"]["threshold"][0] is None
    assert "1.000 at 1 and 1.000 at 4" in froc_line(summary)


def test_tied_confidences_are_one_operating_point():
    a = CaseLesionHits(np.array([0.7, 0.7, 0.4]), np.array([-1, 0, 1]), 2)
    curve = froc_curve([a])
    assert curve.thresholds[1:].tolist() == [0.7, 0.4]
    np.testing.assert_allclose(curve.sensitivity, [0, 0.5, 1.0])
    np.testing.assert_allclose(curve.fp_per_case, [0, 1.0, 1.0])


def test_no_reference_lesion_gives_undefined_sensitivity_and_counts_false_positives():
    curve = froc_curve([CaseLesionHits(np.array([0.8]), np.array([-1]), 0),
                        CaseLesionHits(np.zeros(0), np.zeros(0, np.int64), 0)])
    assert np.isnan(curve.sensitivity).all() and curve.fp_per_case.tolist() == [0.0, 0.5]
    assert math.isnan(curve.sensitivity_at(1)) and math.isnan(curve.summary()["mean_sensitivity"])
    assert "n/a at 1" in froc_line(curve.summary())


def test_empty_and_mismatched_inputs():
    empty = lesion_hits(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 3), bool), np.zeros((2, 3, 3)))
    assert empty.n_ref == 0 and empty.hits.size == 0
    only_ref = np.zeros((2, 3, 3), bool)
    only_ref[0, 0, 0] = True
    missed = lesion_hits(np.zeros((2, 3, 3), bool), only_ref, np.zeros((2, 3, 3)))
    assert missed.n_ref == 1 and missed.hits.size == 0
    with pytest.raises(ValueError, match="one shape"):
        lesion_hits(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="at least one case"):
        froc_curve([])


def test_connectivity_six_splits_corner_touching_lesions():
    pred = np.zeros((2, 4, 4), bool)
    pred[0, 0, 0] = pred[1, 1, 1] = True  # touch at a corner only
    prob = pred.astype(np.float32)
    assert lesion_hits(pred, np.zeros_like(pred), prob).hits.size == 1
    assert lesion_hits(pred, np.zeros_like(pred), prob, connectivity=6).hits.size == 2


def test_maps_that_are_no_probabilities_and_bad_rates_are_refused():
    """A NaN in a lesion made a threshold of its own that no lesion passes (sensitivity 1.0 at 1 FP/case where 0
    was right); a uint16 map without its divisor gave confidences of 1000 (helper audit)."""
    pred, ref = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    pred[0, 0, 0] = ref[0, 0, 0] = pred[4, 4, 4] = True
    prob = np.full((5, 5, 5), 0.5)
    prob[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        lesion_hits(pred, ref, prob)
    with pytest.raises(ValueError, match="from 1000 to 1000"):
        lesion_hits(pred, ref, np.full((5, 5, 5), 1000, np.uint16))
    assert lesion_hits(pred, ref, np.full((5, 5, 5), 1000, np.uint16), divisor=1000.0).confidences.tolist() == [1, 1]
    curve = froc_curve([lesion_hits(pred, ref, np.full((5, 5, 5), 0.5))])
    for rate in (-1, float("nan")):
        with pytest.raises(ValueError, match="fp_rate must be a number >= 0"):
            curve.sensitivity_at(rate)


def _ring_and_plain_lesion():
    """segment's path (Segmenter.finish: post-processing, then the lesion report with the network's labels) on a
    network output of two lesions, 1 mm voxels: a ring (radius 4-7 voxels, 1162 voxels at p 191/255) around a core
    the network left unlabelled (257 voxels at 13/255), which the hole fill makes tumor, and a plain 6 x 6 x 6 cube
    at 204/255. Returns the network's labels, the result and the reference tumor (the whole ball)."""
    from LiverTumorSegLib.inference.options import SegmentationOptions
    from LiverTumorSegLib.inference.segmenter import NetworkOutput, Segmenter
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    network = np.zeros((24, 48, 48), np.uint8)
    network[2:22, 4:44, 4:44] = 1
    zz, yy, xx = np.ogrid[:24, :48, :48]
    r = np.sqrt((zz - 12.0) ** 2 + (yy - 16.0) ** 2 + (xx - 16.0) ** 2)
    network[r <= 7] = 2
    network[r <= 4] = 0
    network[9:15, 28:34, 28:34] = 2
    probability = np.zeros(network.shape, np.uint8)
    probability[network == 2] = 191
    probability[r <= 4] = 13
    probability[9:15, 28:34, 28:34] = 204
    assert ((network == 2) & (r <= 7)).sum() == 1162 and (r <= 4).sum() == 257
    ct = CTVolume(np.full(network.shape, 60.0, np.float32), ImageGeometry(spacing=(1.0, 1.0, 1.0)))
    result = Segmenter(SegmentationOptions(probabilities=True)).finish(
        ct, NetworkOutput(labels=network, probability=probability, facts={"device": "cpu"}, timings={}))
    assert (result.labels[r <= 4] == 2).all()  # the core was filled as tumor
    return network, result, r <= 7


RING_WHOLE = (1162 * 191 + 257 * 13) / (1419 * 255)  # the ring lesion's mean over all its voxels: 0.6226


def test_froc_confidence_is_the_lesion_reports_mean_tumor_probability():
    """The FROC took its own mean over the whole predicted component while segment's report takes the one of the
    voxels the network labelled tumor (a core the hole fill added does not count): on this ring lesion 0.6226
    against 0.7490, on either side of the 0.65 the uncertain-lesion rule applies. Both now come from one function;
    given the network's tumor voxels the FROC confidence is the report's value, and without them (evaluate: the
    final label map only) it is the report's value of measure --probabilities, over the whole lesion."""
    from LiverTumorSegLib.inference.lesion_report import lesion_report

    network, result, ref = _ring_and_plain_lesion()
    report = [d["mean_tumor_probability"] for d in result.report["lesions"]]  # segment's report
    assert report == [pytest.approx(191 / 255, abs=1e-15), pytest.approx(204 / 255, abs=1e-15)]
    hits = lesion_hits(result.labels == 2, ref, result.tumor_probability, divisor=255.0, network_tumor=network == 2)
    assert hits.hits.tolist() == [0, -1]  # the ring (lesion 1 of the report) hits, the cube is a false positive
    assert hits.confidences.tolist() == report
    measured = lesion_report(result.labels, result.geometry, tumor_probability_zyx=result.tumor_probability)
    whole = lesion_hits(result.labels == 2, ref, result.tumor_probability, divisor=255.0)
    assert whole.confidences.tolist() == [d["mean_tumor_probability"] for d in measured["lesions"]]
    assert whole.confidences.tolist() == [pytest.approx(RING_WHOLE, abs=1e-15), pytest.approx(204 / 255, abs=1e-15)]
    as_floats = lesion_hits(result.labels == 2, ref, result.tumor_probability.astype(np.float32) / 255,
                            network_tumor=network == 2)
    np.testing.assert_allclose(as_floats.confidences, report, rtol=1e-6)
    with pytest.raises(ValueError, match=r"network tumor mask \(1, 2, 3\)"):
        lesion_hits(result.labels == 2, ref, result.tumor_probability, 255.0, network_tumor=np.zeros((1, 2, 3)))


def test_evaluate_froc_thresholds_are_the_confidences_measure_reports(tmp_path, capsys):
    """evaluate --prob on segment's label map and uint8 map: the FROC's thresholds are the lesions' confidences,
    each the mean_tumor_probability measure --probabilities reports for the same two files."""
    import json

    from LiverTumorSegLib.cli import main
    from LiverTumorSegLib.io import write_label_map, write_probability_map

    _, result, ref = _ring_and_plain_lesion()
    reference = np.where(result.labels > 0, 1, 0).astype(np.uint8)
    reference[ref] = 2
    write_label_map(tmp_path / "pred.nii.gz", result.labels, result.geometry)
    write_label_map(tmp_path / "ref.nii.gz", reference, result.geometry)
    write_probability_map(tmp_path / "prob.nii.gz", result.tumor_probability, result.geometry)
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "--prob", str(tmp_path / "prob.nii.gz"), "--no-surface", "--no-plots", "--no-progress",
                 "-o", str(tmp_path / "eval")]) == 0
    assert main(["measure", str(tmp_path / "pred.nii.gz"), "--probabilities", str(tmp_path / "prob.nii.gz"),
                 "-o", str(tmp_path / "measure.json")]) == 0
    froc = json.loads((tmp_path / "eval" / "summary.json").read_text())["lesion_froc"]
    measured = json.loads((tmp_path / "measure.json").read_text())["lesions"]
    assert froc["points"]["threshold"] == [None] + sorted((d["mean_tumor_probability"] for d in measured),
                                                          reverse=True)
    assert froc["points"]["threshold"][2] == pytest.approx(RING_WHOLE, abs=1e-12)
    assert froc["points"]["sensitivity"] == [0.0, 0.0, 1.0] and froc["points"]["fp_per_case"] == [0.0, 1.0, 1.0]


def test_the_froc_pictures_tick_labels_are_plain_numbers(tmp_path, monkeypatch):
    """The pictures' texts are drawn as given (a '$' in a case name ended evaluate); a log axis labels its ticks in
    math text ('$\\mathdefault{10^{-1}}$'), which then showed as raw TeX laid over each other (the diff review). The
    FROC axis has plain labels of its own: 0.125 ... 8 false positives per case."""
    from matplotlib.figure import Figure

    from LiverTumorSegLib.metrics.froc import FrocCurve
    from LiverTumorSegLib.metrics.report import plot_froc_curve

    drawn = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        drawn.append([t.get_text() for t in self.axes[0].get_xticklabels()])
        return result

    monkeypatch.setattr(Figure, "savefig", keep)
    curve = FrocCurve(thresholds=np.array([np.inf, 0.9, 0.5]), sensitivity=np.array([0.0, 0.5, 1.0]),
                      fp_per_case=np.array([0.0, 0.5, 3.0]), n_cases=2, n_ref_lesions=2, n_pred_lesions=5)
    plot_froc_curve(curve, tmp_path / "froc.png")
    labels = [text for text in drawn[-1] if text]
    assert labels and not any("$" in text for text in labels), labels
    assert {"0.125", "1", "8"} <= set(labels)
