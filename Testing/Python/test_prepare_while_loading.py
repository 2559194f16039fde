"""segment_file resamples the CT to the network grid while the model still loads (after the package is verified,
before its network is built): the same labels as without the overlap, used only for the same CT and an equal
preprocessing config, dropped (and done again by the engine) whenever anything about it is off."""
import json
import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from LiverTumorSegLib import models as models_module  # noqa: E402
from LiverTumorSegLib import package as package_module  # noqa: E402
from LiverTumorSegLib.inference import SegmentationOptions  # noqa: E402
from LiverTumorSegLib.inference import prepared_input as prepared_module  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402
from LiverTumorSegLib.io import read_label_map, read_volume, write_volume  # noqa: E402
from LiverTumorSegLib.preprocessing import SlicePreprocessor  # noqa: E402

from inference_helpers import corner_phantom, oracle_config, oracle_package, oracle_predictor, tiny_unet_package  # noqa: E402,E501

WAIT_S = 60.0  # a bound that only a hang reaches


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("pkg"), context_slices=1).path


@pytest.fixture
def slow_build(monkeypatch):
    """The network build (where a fresh process imports MONAI) waits until the CT has been prepared, so the
    overlap happens on any machine; returns the list of CTs prepared early."""
    prepared_early = []
    done = threading.Event()
    real_prepare, real_build = prepared_module.prepare_input, models_module.build_model

    def recording_prepare(volume, config):
        try:
            result = real_prepare(volume, config)
            prepared_early.append(result)
            return result
        finally:
            done.set()

    def waiting_build(*args, **kwargs):
        done.wait(WAIT_S)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(prepared_module, "prepare_input", recording_prepare)
    monkeypatch.setattr(models_module, "build_model", waiting_build)
    return prepared_early, done


def counting_prepares(monkeypatch):
    calls = []
    real = SlicePreprocessor.prepare

    def counted(self, volume, *args, **kwargs):
        calls.append(volume.shape_zyx)
        return real(self, volume, *args, **kwargs)

    monkeypatch.setattr(SlicePreprocessor, "prepare", counted)
    return calls


def run(tmp_path, options, name, ct):
    Segmenter(options).segment_file(ct, tmp_path / f"{name}.nii.gz", report_path=tmp_path / f"{name}.json",
                                    probability_path=tmp_path / f"{name}_p.nii.gz")
    report = json.loads((tmp_path / f"{name}.json").read_text())
    return (read_label_map(tmp_path / f"{name}.nii.gz").array, read_volume(tmp_path / f"{name}_p.nii.gz").array,
            report)


def test_the_ct_is_prepared_while_the_model_loads_and_gives_the_same_labels(tmp_path, tiny_path, slow_build,
                                                                         monkeypatch):
    prepared_early, _ = slow_build
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1, batch_size=4)
    prepares = counting_prepares(monkeypatch)
    labels, probability, report = run(tmp_path, options, "overlapped", ct)
    assert len(prepared_early) == 1 and len(prepares) == 1  # prepared once, early; the engine did not again
    assert report["model_load_s"]["during_preprocess"] is True and report["model_load_s"]["during_read"] is True
    assert report["timings_s"]["preprocess"] >= prepared_early[0].seconds

    preloaded = Segmenter(options).load()  # the model loaded first: the engine prepares the CT itself
    preloaded.segment_file(ct, tmp_path / "b.nii.gz", report_path=tmp_path / "b.json",
                           probability_path=tmp_path / "b_p.nii.gz")
    assert len(prepares) == 2 and len(prepared_early) == 1
    assert json.loads((tmp_path / "b.json").read_text())["model_load_s"]["during_preprocess"] is False
    np.testing.assert_array_equal(labels, read_label_map(tmp_path / "b.nii.gz").array)
    np.testing.assert_array_equal(probability, read_volume(tmp_path / "b_p.nii.gz").array)


def test_a_window_override_is_prepared_with_the_overridden_window(tmp_path, tiny_path, slow_build):
    prepared_early, _ = slow_build
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1,
                                  window_level=60.0, window_width=300.0)
    labels, _, report = run(tmp_path, options, "w", ct)
    assert report["model_load_s"]["during_preprocess"] is True
    assert prepared_early[0].config.channels[0]["level"] == 60.0
    assert prepared_early[0].config.channels[0]["width"] == 300.0
    plain = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1)
    preloaded = Segmenter(options).load()
    assert preloaded.engine.preprocessing == prepared_early[0].config
    assert Segmenter(plain).load().engine.preprocessing != prepared_early[0].config
    preloaded.segment_file(ct, tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(labels, read_label_map(tmp_path / "b.nii.gz").array)


def test_two_stage_mode_is_not_prepared_early(tmp_path, tiny_path, slow_build):
    prepared_early, done = slow_build
    done.set()  # nothing will be prepared early: the build must not wait for it
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1, two_stage=True)
    _, _, report = run(tmp_path, options, "two", ct)
    assert prepared_early == [] and report["model_load_s"]["during_preprocess"] is False


def test_a_failure_while_preparing_early_is_dropped_and_the_engine_prepares_the_ct(tmp_path, tiny_path,
                                                                                   monkeypatch):
    release = threading.Event()
    real_build = models_module.build_model

    def failing_prepare(volume, config):
        release.set()
        raise MemoryError("no room for the early copy")

    def waiting_build(*args, **kwargs):
        release.wait(WAIT_S)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(prepared_module, "prepare_input", failing_prepare)
    monkeypatch.setattr(models_module, "build_model", waiting_build)
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1)
    labels, _, report = run(tmp_path, options, "f", ct)
    assert release.is_set() and report["model_load_s"]["during_preprocess"] is False
    monkeypatch.setattr(models_module, "build_model", real_build)
    preloaded = Segmenter(options).load()
    preloaded.segment_file(ct, tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(labels, read_label_map(tmp_path / "b.nii.gz").array)


def test_a_ct_too_big_for_the_network_grid_is_not_prepared_early(monkeypatch):
    from LiverTumorSegLib import validation
    from LiverTumorSegLib.errors import ResourceError

    def refuse(*args, **kwargs):
        raise ResourceError("too big")

    monkeypatch.setattr(validation, "check_network_memory", refuse)
    assert prepared_module.prepare_if_it_fits(corner_phantom().ct, oracle_config()) is None


def test_a_load_that_fails_after_the_config_is_known_reports_the_load_error(tmp_path, tiny_path, monkeypatch):
    from LiverTumorSegLib.errors import ModelPackageError

    def broken_build(*args, **kwargs):
        raise ModelPackageError("the network cannot be built")

    monkeypatch.setattr(models_module, "build_model", broken_build)
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1)
    with pytest.raises(ModelPackageError, match="cannot be built"):
        Segmenter(options).segment_file(ct, tmp_path / "seg.nii.gz")
    assert not (tmp_path / "seg.nii.gz").exists()


def test_the_package_announces_its_preprocessing_before_the_network_is_planned_and_built(tmp_path, tiny_path,
                                                                                        monkeypatch):
    events = []
    real_build = models_module.build_model

    def recording_build(*args, **kwargs):
        events.append("build")  # the plan on the meta device (MONAI's import on first use), then filled
        return real_build(*args, **kwargs)

    monkeypatch.setattr(models_module, "build_model", recording_build)
    package = package_module.load_model_package(tiny_path, preprocessing_ready=lambda c: events.append(c))
    assert events[0] == package.preprocessing and events[1:] == ["build"]  # planned once, then given the weights

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a package")
    announced = []
    with pytest.raises(package_module.ModelPackageError):
        package_module.load_model_package(broken, preprocessing_ready=announced.append)
    assert announced == []  # metadata that fails validation never hands out a preprocessing


def test_work_on_a_package_that_fails_its_hash_check_is_never_used(tmp_path, tiny_path, slow_build):
    """The config is announced before the tensors' hashes are checked: a tampered package's early resampling
    happens, and is thrown away with the load's error; nothing is written."""
    from LiverTumorSegLib.errors import ModelPackageError

    prepared_early, done = slow_build
    done.set()
    tampered = tmp_path / "tampered.safetensors"
    data = bytearray(tiny_path.read_bytes())
    data[-3] ^= 0xFF  # a weight byte: the weights' hash no longer matches
    tampered.write_bytes(bytes(data))
    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    with pytest.raises(ModelPackageError, match="hash|SHA-256|sha256"):
        Segmenter(SegmentationOptions(model=str(tampered), device="cpu", threads=1)).segment_file(
            ct, tmp_path / "seg.nii.gz")
    assert not (tmp_path / "seg.nii.gz").exists()


def engine_and_offer(volume, config=None):
    engine = SliceInferenceEngine(oracle_package(), device="cpu", threads=1, batch_size=4,
                                  batch_predictor=oracle_predictor)
    offer = prepared_module.prepare_input(volume, config if config is not None else engine.preprocessing)
    return engine, offer


def test_the_engine_uses_an_offer_only_for_the_same_ct_and_config_and_only_once(monkeypatch):
    volume = corner_phantom().ct
    engine, offer = engine_and_offer(volume)
    expected = engine.predict(volume)
    prepares = counting_prepares(monkeypatch)

    engine.offer_prepared(offer)
    np.testing.assert_array_equal(engine.predict(volume), expected)
    assert engine.used_offered and prepares == []
    engine.predict(volume)  # the offer was used up
    assert not engine.used_offered and len(prepares) == 1

    copy = type(volume)(volume.array.copy(), volume.geometry)  # equal, but not the CT the offer was made for
    engine.offer_prepared(offer)
    np.testing.assert_array_equal(engine.predict(copy), expected)
    assert not engine.used_offered and len(prepares) == 2

    other = oracle_config()
    other.channels[0]["level"] += 10.0
    engine, offer = engine_and_offer(volume, other)
    engine.offer_prepared(offer)
    labels, _ = engine.predict_with_probability(volume)
    assert not engine.used_offered and len(prepares) == 4  # the offer's own preparation, then the engine's
    np.testing.assert_array_equal(labels, expected)


def prepares_by_thread(monkeypatch):
    threads = []
    real = SlicePreprocessor.prepare

    def recorded(self, volume, *args, **kwargs):
        threads.append(threading.current_thread().name.split("_")[0])
        return real(self, volume, *args, **kwargs)

    monkeypatch.setattr(SlicePreprocessor, "prepare", recorded)
    return threads


def test_a_batch_resamples_each_ct_on_the_reader_thread_with_the_same_labels(tmp_path, tiny_path, monkeypatch):
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.phantom import make_phantom

    (tmp_path / "cts").mkdir()
    for i in range(3):
        write_volume(tmp_path / "cts" / f"ct_{i}.nii.gz",
                     make_phantom((10, 32, 36), (2.5, 2.5, 4.0), noise_hu=4.0, seed=i).ct)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1, batch_size=4)
    segmenter = Segmenter(options).load()
    threads = prepares_by_thread(monkeypatch)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done"] * 3
    assert threads == ["ct-reader"] * 3  # each CT prepared once, on the reader; never again by the engine
    for i in range(3):
        single = Segmenter(options).load()
        single.segment_file(tmp_path / "cts" / f"ct_{i}.nii.gz", tmp_path / f"single_{i}.nii.gz")
        np.testing.assert_array_equal(read_label_map(tmp_path / "out" / f"ct_{i}.nii.gz").array,
                                      read_label_map(tmp_path / f"single_{i}.nii.gz").array)

    threads.clear()
    two_stage = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1,
                                              two_stage=True)).load()
    segment_batch(find_cases(tmp_path / "cts", tmp_path / "out2"), two_stage)
    assert "ct-reader" not in threads  # two-stage resamples crops on the network thread


def test_a_batch_whose_early_preparation_fails_still_segments_every_case(tmp_path, tiny_path, monkeypatch):
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.phantom import make_phantom

    (tmp_path / "cts").mkdir()
    for i in range(2):
        write_volume(tmp_path / "cts" / f"ct_{i}.nii.gz",
                     make_phantom((10, 32, 36), (2.5, 2.5, 4.0), noise_hu=4.0, seed=i).ct)

    def failing(volume, config):
        raise RuntimeError("no early copy")

    monkeypatch.setattr(prepared_module, "prepare_input", failing)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1)
    threads = prepares_by_thread(monkeypatch)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), Segmenter(options).load())
    assert [s.status for s in statuses] == ["done"] * 2 and threads == ["MainThread"] * 2


def test_the_early_preparation_uses_the_threads_asked_for_and_gives_the_count_back(monkeypatch):
    import torch

    seen = []
    real = prepared_module.prepare_input
    monkeypatch.setattr(prepared_module, "prepare_input",
                        lambda volume, config: (seen.append(torch.get_num_threads()), real(volume, config))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert prepared_module.prepare_if_it_fits(corner_phantom().ct, oracle_config(), threads=1) is not None
        assert prepared_module.prepare_if_it_fits(corner_phantom().ct, oracle_config()) is not None
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _blocked_build(monkeypatch):
    """The network build blocks until released: a model load that has not ended when the input's error comes."""
    release = threading.Event()
    real_build = models_module.build_model

    def blocked(*args, **kwargs):
        release.wait(WAIT_S)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(models_module, "build_model", blocked)
    return release


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, "cancel"])
def test_ctrl_c_or_a_cancel_during_the_read_leaves_at_once_without_waiting_for_the_model_load(tmp_path, tiny_path,
                                                                                             monkeypatch, interrupt):
    """An interrupt before the load ended waited for the whole load: 1-5 s, and for ever in 4 of 10 early SIGTERMs
    (the interrupted import left a lock the load then waited on: the batch audit). A bad input still lets the load
    end first (no import runs on behind the caller's back)."""
    import time

    from LiverTumorSegLib import io as io_module
    from LiverTumorSegLib.errors import CancelledError
    from LiverTumorSegLib.progress import CancellationToken

    ct = write_volume(tmp_path / "ct.nii.gz", corner_phantom().ct)
    release = _blocked_build(monkeypatch)
    token = CancellationToken()
    real_read = io_module.read_volume

    def read_then_interrupt(*args, **kwargs):
        volume = real_read(*args, **kwargs)
        if interrupt is KeyboardInterrupt:
            raise KeyboardInterrupt
        token.cancel()
        return volume

    monkeypatch.setattr(io_module, "read_volume", read_then_interrupt)
    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu"))
    started = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt if interrupt is KeyboardInterrupt else CancelledError):
            segmenter.segment_file(ct, tmp_path / "seg.nii.gz", cancel=token)
        assert not segmenter.loaded  # the load is still blocked (until the release below): nothing waited for it
        # and no wait with a shorter timeout either: a bound far above the read (well under a second here) that a
        # slow, busy CI machine does not reach
        assert time.perf_counter() - started < WAIT_S / 2
    finally:
        release.set()
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_bad_input_during_the_load_still_waits_for_the_load_to_end(tmp_path, tiny_path, monkeypatch):
    from LiverTumorSegLib.errors import InputError

    release = _blocked_build(monkeypatch)
    bad = tmp_path / "ct.nii.gz"
    bad.write_bytes(b"not a CT")
    segmenter = Segmenter(SegmentationOptions(model=str(tiny_path), device="cpu"))
    timer = threading.Timer(0.5, release.set)
    timer.start()
    with pytest.raises(InputError):
        segmenter.segment_file(bad, tmp_path / "seg.nii.gz")
    assert release.is_set() and segmenter.loaded                # it left only after the load had ended


def test_a_batch_does_not_resample_an_oblique_ct_on_its_own_grid_ahead(tmp_path, tiny_path, monkeypatch):
    """An oblique CT is segmented on a patient-aligned grid (inference/axis_aligned.py), which the network thread
    makes: the reader's early copy of the CT's own oblique grid at the network's resolution was never used, yet was
    made and held beside the aligned copy (CPU time and memory the check did not count), as segment_file does not."""
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.phantom import make_phantom
    from LiverTumorSegLib.volume import CTVolume, ImageGeometry

    a = np.deg2rad(20.0)
    direction = (1.0, 0.0, 0.0, 0.0, float(np.cos(a)), float(-np.sin(a)), 0.0, float(np.sin(a)), float(np.cos(a)))
    (tmp_path / "cts").mkdir()
    for i in range(2):
        ct = make_phantom((10, 32, 36), (2.5, 2.5, 4.0), noise_hu=4.0, seed=i).ct
        tilted = CTVolume(ct.array, ImageGeometry(spacing=ct.geometry.spacing, origin=ct.geometry.origin,
                                                  direction=direction))
        write_volume(tmp_path / "cts" / f"ct_{i}.nii.gz", tilted)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1, batch_size=4)
    segmenter = Segmenter(options).load()
    threads = prepares_by_thread(monkeypatch)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done"] * 2
    assert "ct-reader" not in threads and len(threads) == 2  # each CT prepared once: its aligned grid, by the engine
    report = json.loads((tmp_path / "out" / "reports" / "ct_0.json").read_text())
    assert report["network_grid"]["kind"] == "axis_aligned"


def test_a_batch_s_memory_check_does_not_ask_again_for_the_network_grid_ct_its_reader_prepared(tmp_path, tiny_path,
                                                                                                monkeypatch):
    """The reader resamples each CT to the network grid ahead of the network: that float32 CT is held when the case's
    memory check reads the available memory, so the check takes its bytes off what it asks for (it is offered to the
    engine first). Checked before the offer, the check asked for it again."""
    from LiverTumorSegLib import validation
    from LiverTumorSegLib.inference.batch import find_cases, segment_batch
    from LiverTumorSegLib.phantom import make_phantom

    (tmp_path / "cts").mkdir()
    for i in range(2):
        write_volume(tmp_path / "cts" / f"ct_{i}.nii.gz",
                     make_phantom((10, 32, 36), (2.5, 2.5, 4.0), noise_hu=4.0, seed=i).ct)
    held = []
    real_check = validation.check_network_memory

    def recording_check(*args, **kwargs):
        if "held_bytes" in kwargs:  # the case's check (the reader's own, before it prepares, passes none)
            held.append(kwargs["held_bytes"])
        return real_check(*args, **kwargs)

    monkeypatch.setattr(validation, "check_network_memory", recording_check)
    early = []
    real_prepare = prepared_module.prepare_input

    def recording_prepare(volume, config):
        prepared = real_prepare(volume, config)
        early.append(int(prepared.prepared.hu_net.nbytes))
        return prepared

    monkeypatch.setattr(prepared_module, "prepare_input", recording_prepare)
    options = SegmentationOptions(model=str(tiny_path), device="cpu", precision="fp32", threads=1)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), Segmenter(options).load())
    assert [s.status for s in statuses] == ["done"] * 2 and len(early) == 2
    assert held == early and min(held) > 0
