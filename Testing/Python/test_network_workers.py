"""CPU network workers: the torch CPU engine runs two batches at once (each on half the threads) while the calling
thread prepares and restores. The labels and probabilities must be those of one batch at a time; a worker's error
must reach the caller; a cancelled run must leave no worker using the model."""
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from LiverTumorSegLib.errors import CancelledError  # noqa: E402
from LiverTumorSegLib.inference.engine import CPU_NETWORK_WORKERS, SliceInferenceEngine  # noqa: E402
from LiverTumorSegLib.phantom import PhantomLesion, make_phantom  # noqa: E402
from LiverTumorSegLib.progress import CancellationToken  # noqa: E402

from inference_helpers import tiny_unet_package  # noqa: E402


@pytest.fixture(autouse=True)
def _threads_restored():
    torch.manual_seed(0)
    np.random.seed(0)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _phantom_ct():
    lesion = PhantomLesion(center_zyx=(8.0, 16.0, 14.0), radius_mm=5.0, hu=15.0)
    return make_phantom((22, 40, 44), (2.0, 2.0, 4.0), lesions=[lesion], noise_hu=0.0).ct


@pytest.fixture
def package(tmp_path):
    return tiny_unet_package(tmp_path, context_slices=1)


def _engine(package, workers, threads=2, calls=None):
    """An engine on ``package`` (engines on one package share its network: patch ``forward`` last)."""
    engine = SliceInferenceEngine(package, device="cpu", threads=threads, batch_size=3, precision="fp32",
                                  network_workers=workers)
    if calls is not None:
        forward = engine.model.forward

        def recording_forward(*args, **kwargs):
            calls.append((threading.current_thread().name, torch.get_num_threads()))
            return forward(*args, **kwargs)

        engine.model.forward = recording_forward
    return engine


def test_workers_give_the_same_labels_and_probability(package):
    ct = _phantom_ct()
    one = _engine(package, 1).predict_with_probability(ct)
    calls = []
    two = _engine(package, 2, calls=calls).predict_with_probability(ct)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
    assert one[0].any() and len(calls) == 8  # 22 slices in batches of 3
    # every batch ran on a network worker with half of the 2 threads; the caller has both again afterwards
    assert all(name.startswith("network") and threads == 1 for name, threads in calls)
    assert torch.get_num_threads() == 2


def test_default_workers_and_limits(package):
    assert _engine(package, None, threads=2)._network_workers == CPU_NETWORK_WORKERS == 2
    assert _engine(package, None, threads=1)._network_workers == 1  # never more workers than threads
    assert _engine(package, 4, threads=2)._network_workers == 2
    with pytest.raises(Exception, match="network_workers must be at least 1"):
        _engine(package, 0)


def test_a_worker_error_reaches_the_caller_and_the_engine_goes_on(package):
    engine = _engine(package, 2)
    forward = engine.model.forward
    failing = {"on": True}

    def sometimes_failing(*args, **kwargs):
        if failing["on"] and threading.current_thread().name.startswith("network"):
            raise RuntimeError("worker failed on purpose")
        return forward(*args, **kwargs)

    engine.model.forward = sometimes_failing
    ct = _phantom_ct()
    with pytest.raises(RuntimeError, match="worker failed on purpose"):
        engine.predict(ct)
    failing["on"] = False
    expected = _engine(package, 1).predict(ct)
    assert np.array_equal(engine.predict(ct), expected)


def test_cancel_leaves_no_worker_running(package):
    engine = _engine(package, 2)
    forward = engine.model.forward
    running, token = [0], CancellationToken()
    lock = threading.Lock()

    def counting_forward(*args, **kwargs):
        with lock:
            running[0] += 1
        try:
            token.cancel()  # cancel as soon as the first batch runs ...
            time.sleep(0.2)  # ... and stay busy long enough that returning without waiting would be seen
            return forward(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    engine.model.forward = counting_forward
    with pytest.raises(CancelledError):
        engine.predict(_phantom_ct(), cancel=token)
    assert running[0] == 0  # predict returned only after every started batch had ended
