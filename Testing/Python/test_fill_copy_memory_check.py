"""The copy of a CT with a resampling's fill made air (``resampling_fill.without_fill``) is checked against the
available memory before it is made. It was made first and the memory check ran after it, so a CT too large for that
copy ended in a bare MemoryError ('Ran out of memory (MemoryError)') instead of the check's refusal with its numbers.
Here the available memory is set small and the copy raises MemoryError if it is tried at all."""
import numpy as np
import pytest

from test_network_memory_copies import _ct, _segmenter

from LiverTumorSegLib import validation
from LiverTumorSegLib.errors import ResourceError
from LiverTumorSegLib.inference import resampling_fill

pytest.importorskip("torch")

SHAPE = (8, 256, 256)


def _copy_refused(monkeypatch):
    """Make the fill's copy raise MemoryError; returns the list of calls it got."""
    calls = []

    def no_memory(*args, **kwargs):
        calls.append(args)
        raise MemoryError()

    monkeypatch.setattr(resampling_fill, "without_fill", no_memory)
    return calls


def _available(monkeypatch, available):
    monkeypatch.setattr(validation, "available_memory_bytes", lambda *args, **kwargs: available)


def test_the_check_refuses_before_the_fill_s_copy_is_made(monkeypatch):
    volume = _ct(np.int16, fill=0, body_mm=330.0, shape=SHAPE)
    _available(monkeypatch, 1 << 20)  # 1 MiB
    calls = _copy_refused(monkeypatch)
    with pytest.raises(ResourceError, match=r"needs about .* GiB is available.*copy of the CT, 1 MiB"):
        _segmenter().check_network_memory(volume)
    assert calls == []  # refused before the copy was tried


def test_the_copy_is_asked_for_on_top_of_what_the_check_after_it_asks(monkeypatch):
    """What the pre-copy check lets through is what the check after the copy asks plus the copy's bytes."""
    from test_network_memory_copies import _asked_bytes

    volume = _ct(np.int16, fill=0, body_mm=330.0, shape=SHAPE)
    after_copy = _segmenter()
    after_copy.network_volume(volume)  # the copy made (real memory): the bisection then runs the check after it
    asked_after = _asked_bytes(after_copy, volume, monkeypatch)
    fresh = _segmenter()
    low, high = 0, 1 << 40
    while low < high:  # the least available memory with which the check before the copy lets it be made
        middle = (low + high) // 2
        _available(monkeypatch, middle)
        try:
            fresh._check_fill_copy_fits(volume)
            high = middle
        except ResourceError:
            low = middle + 1
    assert low == asked_after + volume.array.nbytes


def test_a_preparation_ahead_makes_no_copy_that_would_not_fit(monkeypatch):
    """``segment`` while the model loads and a batch's reader prepare the network's CT ahead: too little memory for
    the fill's copy leaves it unmade (None), and the check after the load refuses the CT with its numbers."""
    volume = _ct(np.int16, fill=0, body_mm=330.0, shape=SHAPE)
    segmenter = _segmenter()
    _available(monkeypatch, 1 << 20)
    calls = _copy_refused(monkeypatch)
    assert segmenter.network_volume_ahead(volume) is None
    with pytest.raises(ResourceError, match="resampling's fill"):
        segmenter.check_network_memory(volume)
    assert calls == []


def test_unsigned_ct_s_copy_is_counted_as_float32():
    assert resampling_fill.fill_copy_bytes(np.zeros((2, 3, 4), np.uint16)) == 2 * 3 * 4 * 4
    assert resampling_fill.fill_copy_bytes(np.zeros((2, 3, 4), np.int16)) == 2 * 3 * 4 * 2


def test_a_batch_readers_fill_copy_counts_the_running_cases_network(monkeypatch):
    """A batch's reader prepares the next CT while the running case's network may still allocate
    (``batch.RunningNetworkMemory``). The network-grid copy's check counted that network, the earlier copy with the
    resampling's fill made air did not: with memory enough for the copy alone, it was made beside the running
    network. Now the reserved bytes are asked for too, and the reader passes them (no copy then: the engine makes it
    in the CT's turn)."""
    from LiverTumorSegLib.inference import batch, segmenter as segmenter_module

    volume = _ct(np.int16, fill=0, body_mm=330.0, shape=SHAPE)
    probe = _segmenter()
    low, high = 0, 1 << 40
    while low < high:  # the least available memory with which the early copy is made
        middle = (low + high) // 2
        _available(monkeypatch, middle)
        try:
            probe._check_fill_copy_fits(volume, ahead=True)
            high = middle
        except segmenter_module._FillCopyWouldNotFit:
            low = middle + 1
    _available(monkeypatch, low)
    assert _segmenter().network_volume_ahead(volume) is not None  # alone it fits
    calls = _copy_refused(monkeypatch)
    assert _segmenter().network_volume_ahead(volume, reserved_bytes=1 << 20) is None  # beside 1 MiB it does not
    assert calls == []

    asked = []

    class Reader:
        options = _segmenter().options
        known_preprocessing = {"target_spacing": [1.0, 1.0, 1.0]}

        def network_volume_ahead(self, ct, reserved_bytes=0):
            asked.append(reserved_bytes)
            return None

    monkeypatch.setattr(batch, "_read_case", lambda *args: (volume, [], 0.0))
    monkeypatch.setattr(segmenter_module, "_prepare_while_loading_wanted", lambda options, ct: True)
    running = batch.RunningNetworkMemory()
    running.publish(0, 12345)
    from LiverTumorSegLib.inference.core_share import CoreShare

    case = batch.BatchCase(case_id="ct_1", input_path=None, output_path=None, report_path=None)
    result = batch._read_and_prepare_case(case, False, CoreShare(), Reader(), running, 1)
    assert asked == [12345] and result[3] is None
