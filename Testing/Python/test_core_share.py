"""Sharing the CPU's cores between the network and a batch run's helper threads (reader, finisher): the network
takes one thread fewer per busy helper, never fewer than one, and all of them again afterwards."""
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.inference import batch as batch_module  # noqa: E402
from LiverTumorSegLib.inference.batch import find_cases, segment_batch  # noqa: E402
from LiverTumorSegLib.inference.core_share import CoreShare  # noqa: E402
from LiverTumorSegLib.inference.engine import SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.inference.segmenter import Segmenter  # noqa: E402
from LiverTumorSegLib.phantom import make_phantom  # noqa: E402

from inference_helpers import tiny_unet_package  # noqa: E402
from test_segment_batch import write_phantoms  # noqa: E402


@pytest.fixture(autouse=True)
def _threads_restored():
    torch.manual_seed(0)
    np.random.seed(0)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_network_threads_count_busy_helpers():
    share = CoreShare()
    assert share.network_threads(4) == 4 and share.busy_helpers == 0
    with share.busy():
        assert share.network_threads(4) == 3
        with share.busy():
            assert share.network_threads(4) == 2 and share.network_threads(2) == 1 and share.network_threads(1) == 1
    with pytest.raises(RuntimeError):
        with share.busy():
            raise RuntimeError("a helper failed")
    assert share.busy_helpers == 0 and share.network_threads(4) == 4


def _recording_engine(tmp_path, seen):
    """A tiny U-Net engine with 2 threads in one stream (the thread sharing of one network; two streams' share is
    test_cpu_streams.py's) whose network records torch's thread count at every batch."""
    engine = SliceInferenceEngine(tiny_unet_package(tmp_path), device="cpu", threads=2, batch_size=4,
                                  precision="fp32", cpu_streams=1)
    forward = engine.model.forward

    def recording_forward(*args, **kwargs):
        share = engine.core_share
        seen.append((torch.get_num_threads(), None if share is None else share.busy_helpers))
        return forward(*args, **kwargs)

    engine.model.forward = recording_forward
    return engine


def test_engine_gives_a_thread_to_each_busy_helper(tmp_path):
    seen = []
    torch.set_num_threads(3)  # the caller's own count: the engine uses its 2 while it works and gives 3 back
    engine = _recording_engine(tmp_path, seen)
    assert torch.get_num_threads() == 3
    ct = make_phantom((12, 36, 40), (2.0, 2.0, 4.0), noise_hu=0.0).ct
    alone = engine.predict(ct)
    share = CoreShare()
    engine.use_core_share(share)
    with share.busy():
        beside_a_helper = engine.predict(ct)
    idle_helpers = engine.predict(ct)
    engine.use_core_share(None)
    assert torch.get_num_threads() == 3 and engine.core_share is None
    per_run = len(seen) // 3
    assert per_run == 3 and [t for t, _ in seen] == [2] * per_run + [1] * per_run + [2] * per_run
    # threads change no label beyond float summation order: a near-tie of an untrained network may flip a voxel on
    # another CPU, so a few voxels in a thousand are allowed; a mixed-up batch or slice order changes far more
    assert alone.shape == beside_a_helper.shape == idle_helpers.shape
    assert np.mean(alone != beside_a_helper) < 1e-3 and np.mean(alone != idle_helpers) < 1e-3


def test_batch_network_threads_follow_the_helpers(tmp_path, monkeypatch):
    """While the finishing thread works on ct_0, the network on ct_1 runs with one thread; afterwards the engine
    has both again. The finisher holds on until two batches of ct_1 ran, so the check does not race."""
    seen, marks = [], []
    original = batch_module._finish_and_write_case

    def slow_finish(case, *args):
        if case.case_id == "ct_0":
            with args[-1].busy():  # args[-1]: the batch run's CoreShare
                marks.append(len(seen))
                deadline = time.monotonic() + 120.0  # only a hang reaches it, even on a slow, busy machine
                while len(seen) < marks[0] + 2 and time.monotonic() < deadline:
                    time.sleep(0.005)
        return original(case, *args)

    monkeypatch.setattr(batch_module, "_finish_and_write_case", slow_finish)
    torch.set_num_threads(3)
    segmenter = Segmenter(engine=_recording_engine(tmp_path, seen))
    write_phantoms(tmp_path / "cts", 3)
    statuses = segment_batch(find_cases(tmp_path / "cts", tmp_path / "out"), segmenter)
    assert [s.status for s in statuses] == ["done"] * 3 and len(seen) >= marks[0] + 2
    threads, busy = seen[marks[0] + 1]  # set after the finisher was busy
    assert threads == 1 and busy >= 1
    assert torch.get_num_threads() == 3 and segmenter.engine.core_share is None  # the caller's count again
    without = []
    (tmp_path / "b").mkdir()
    segmenter = Segmenter(engine=_recording_engine(tmp_path / "b", without))
    segment_batch(find_cases(tmp_path / "cts", tmp_path / "out2"), segmenter, share_cores=False)
    assert without and all(threads == 2 and busy is None for threads, busy in without)


def test_an_engine_uses_its_own_thread_count_only_while_it_works(tmp_path):
    """An engine set torch's process-wide thread count when built and never gave it back: a library caller's own
    setting was lost, and a second engine's count replaced the first's for the first's runs (its report still
    said its own)."""
    torch.set_num_threads(1)
    one, two = [], []
    engine_one = SliceInferenceEngine(tiny_unet_package(tmp_path), device="cpu", threads=1, batch_size=4,
                                      precision="fp32")
    (tmp_path / "b").mkdir()
    engine_two = _recording_engine(tmp_path / "b", two)
    forward = engine_one.model.forward
    engine_one.model.forward = lambda *a, **k: (one.append(torch.get_num_threads()), forward(*a, **k))[1]
    assert torch.get_num_threads() == 1  # building them changed nothing
    ct = make_phantom((8, 36, 40), (2.0, 2.0, 4.0), noise_hu=0.0).ct
    engine_one.predict(ct)
    engine_two.predict(ct)
    engine_one.predict_with_probability(ct)
    engine_two.predict_batch_probabilities(np.zeros((2, 1, 32, 32), dtype=np.float32))
    assert set(one) == {1} and set(t for t, _ in two) == {2} and torch.get_num_threads() == 1
