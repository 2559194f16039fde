"""The torch CPU network runs ``cpu_streams`` batches at once (SliceInferenceEngine._run_streamed_batches): each on
threads // streams torch threads, in batches of batch_size // streams slices, restored in order by the calling
thread. Same numbers as one stream at the same per-batch arithmetic, really side by side, fewer streams while a
core share's helpers are busy, cancel and errors as before, and the caller's torch thread count given back."""
import threading
import time

import numpy as np
import pytest
import torch

from LiverTumorSegLib.errors import CancelledError, InputError
from LiverTumorSegLib.inference.core_share import CoreShare
from LiverTumorSegLib.inference.engine import SliceInferenceEngine, default_cpu_streams
from LiverTumorSegLib.progress import CancellationToken

from inference_helpers import corner_phantom, tiny_unet_package


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    return tiny_unet_package(tmp_path_factory.mktemp("streams"))


@pytest.fixture(scope="module")
def volume():
    return corner_phantom(shape_zyx=(19, 40, 44)).ct


def _engine(package, **kwargs):
    return SliceInferenceEngine(package, device="cpu", precision="fp32", **kwargs)


class _Concurrency:
    """Wraps the engine's per-batch forward: records the threads it ran on and the most batches at once."""

    def __init__(self, engine, hold_s=0.05):
        self.threads, self.running, self.most, self.lock = set(), 0, 0, threading.Lock()
        real = engine._torch_probabilities

        def counting(x, on_cpu=False):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                self.threads.add(threading.current_thread().name)
                self.torch_threads = torch.get_num_threads()
            try:
                time.sleep(hold_s)  # long enough for a second stream to start beside it
                return real(x, on_cpu)
            finally:
                with self.lock:
                    self.running -= 1

        engine._torch_probabilities = counting


def test_two_streams_give_the_numbers_of_one_stream_with_the_same_batches(tiny_package, volume):
    """Two streams of 4-slice batches on one thread each against one stream of 4-slice batches on one thread: the
    same arithmetic per batch, so the same labels and probability, bit for bit."""
    streamed = _engine(tiny_package, threads=2, cpu_streams=2, batch_size=8)
    single = _engine(tiny_package, threads=1, batch_size=4)
    labels, probability = streamed.predict_with_probability(volume)
    labels_1, probability_1 = single.predict_with_probability(volume)
    np.testing.assert_array_equal(labels, labels_1)
    np.testing.assert_array_equal(probability, probability_1)
    assert labels.max() >= 1 and probability.max() > 0
    assert streamed.last_timings["network"] >= 0 and "restore" in streamed.last_timings


def test_batches_run_side_by_side_on_the_stream_threads_with_their_share_of_the_threads(tiny_package, volume):
    engine = _engine(tiny_package, threads=2, cpu_streams=2, batch_size=4)
    seen = _Concurrency(engine)
    before = torch.get_num_threads()
    engine.predict(volume)
    assert seen.most == 2 and len(seen.threads) == 2
    assert all(name.startswith("network-stream") for name in seen.threads)
    assert seen.torch_threads == 1  # threads // streams
    assert torch.get_num_threads() == before  # the caller's count, given back
    assert engine.device_description.startswith("cpu (2 threads as 2 streams, torch")


def test_one_stream_where_the_threads_or_the_batch_allow_no_more(tiny_package, volume):
    for kwargs in ({"threads": 1}, {"threads": 2, "cpu_streams": 1}, {"threads": 2, "cpu_streams": 2, "batch_size": 1}):
        engine = _engine(tiny_package, **kwargs)
        seen = _Concurrency(engine)
        engine.predict(volume)
        assert seen.most == 1 and seen.threads == {threading.main_thread().name}, kwargs
    assert [default_cpu_streams(n) for n in (1, 2, 3, 4, 16)] == [1, 2, 1, 2, 2]
    with pytest.raises(InputError, match="cpu_streams"):
        _engine(tiny_package, threads=2, cpu_streams=3)
    with pytest.raises(InputError, match="cpu_streams"):
        _engine(tiny_package, threads=2, cpu_streams=0)


def test_a_busy_helper_leaves_one_stream(tiny_package, volume):
    """A batch run's helper busy beside the network (CoreShare) takes one core: on 2 threads one stream runs."""
    engine = _engine(tiny_package, threads=2, cpu_streams=2, batch_size=4)
    share = CoreShare()
    engine.use_core_share(share)
    seen = _Concurrency(engine)
    with share.busy():
        engine.predict(volume)
    assert seen.most == 1
    engine.predict(volume)  # the helper idle: both again
    assert seen.most == 2


def test_cancel_and_a_failing_batch_end_the_streamed_run(tiny_package, volume):
    engine = _engine(tiny_package, threads=2, cpu_streams=2, batch_size=4)
    token = CancellationToken()
    calls = []
    real = engine._torch_probabilities

    def cancelling(x, on_cpu=False):
        calls.append(len(x))
        token.cancel()
        return real(x, on_cpu)

    engine._torch_probabilities = cancelling
    with pytest.raises(CancelledError):
        engine.predict(volume, cancel=token)
    assert len(calls) <= 2  # the batches in flight when it was seen, no more

    def failing(x, on_cpu=False):
        raise MemoryError("no room for this batch")

    engine._torch_probabilities = failing
    with pytest.raises(MemoryError, match="no room"):
        engine.predict(volume)
    assert not [t for t in threading.enumerate() if t.name.startswith("network-stream")]
