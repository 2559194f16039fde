"""benchmarks/network_lanes.py: both ways run the same number of batches and it prints one line per repeat."""
import pytest

torch = pytest.importorskip("torch")
from inference_helpers import tiny_unet_package  # noqa: E402
from script_helpers import load_script  # noqa: E402


def test_one_lane_against_lanes_of_one_thread(tmp_path, capsys, monkeypatch):
    script = load_script("benchmarks/network_lanes.py", "network_lanes")
    package = tiny_unet_package(tmp_path)
    calls = []
    forward = script._forward_batches
    monkeypatch.setattr(script, "_forward_batches", lambda fn, x, batches, threads: (
        calls.append((tuple(x.shape), batches, threads)), forward(fn, x, batches, threads))[-1])
    threads = torch.get_num_threads()
    try:
        assert script.main(["--model", str(package.path), "--threads", "2", "--batches", "2", "--repeats", "2",
                            "--height", "32", "--width", "48", "--precision", "fp32"]) == 0
    finally:
        torch.set_num_threads(threads)  # the script sets the calling thread's count, as segment --threads does
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"network of '{package.path}', fp32, batches of 8 x ")
    assert [line[:3] for line in lines[1:]] == ["[0]", "[1]"] and all("lanes / one lane = " in line for line in lines[1:])
    # warm-up of both ways, then per repeat: 4 batches on 2 threads, and 2 lanes of 2 batches on 1 thread
    assert [(b, t) for _, b, t in calls] == [(2, 2), (1, 1), (1, 1)] + [(4, 2), (2, 1), (2, 1)] * 2
    assert {shape[2:] for shape, _, _ in calls} == {(32, 48)}
