"""ONNX Runtime backend for CPU inference: export the package's torch network once, run it with ORT.

``OnnxSlicePredictor(model, in_channels)(x)`` maps a batch ``(N, C, H, W)`` float32 to logits
``(N, K, H, W)`` float32. The graph is exported per slice size (dynamic batch N), on first use.
Needs the optional ``onnx`` and ``onnxruntime`` packages (``pip install livertumorseg[onnx]``).
"""
import copy
import inspect
import io
import logging
import tempfile
import threading
from collections import OrderedDict
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError
from ..thread_warnings import warnings_hidden_in_this_thread

log = logging.getLogger(__name__)

MAX_SESSIONS = 2
"""ONNX Runtime sessions an :class:`OnnxSlicePredictor` keeps (least recently used dropped). Every CT has its own
network slice size (pixel size, body crop), so a batch run kept one session per CT: 8 CTs held 8 sessions and
438 MiB more than the torch backend, growing with every case."""


_EXPORT_LOCK = threading.Lock()
"""One ``torch.onnx.export`` at a time in this process (the exporter is not thread-safe)."""


EXPORT_FILE_PREFIX = "livertumorseg-onnx."
"""The start of the name of the file in the system's temporary folder that earlier versions wrote an ONNX export to
and read back from: ``livertumorseg-onnx.{pid}-{start time}@{host}-{random}.tmp.onnx``
(``fileutil.temporary_prefix``). The export is made in memory now (a full temporary folder stopped ``--backend
onnx`` with "ONNX Runtime could not run this network (OSError: [Errno 28] No space left on device)", not saying
which disk); an export still removes those files of ended processes (``remove_stale_temporaries``)."""


def onnx_available() -> bool:
    """True when both ``onnx`` and ``onnxruntime`` import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx_bytes(model: "object", input_shape_chw: Tuple[int, int, int], opset: int = 17) -> bytes:
    """Serialized ONNX graph of ``model`` (eval, CPU) for inputs ``(N, C, H, W)`` with dynamic N.

    H and W are fixed at export: networks that pad to a size multiple trace their padding as constants.
    """
    import torch

    from ..models.eval_mode import eval_mode

    if next(iter(model.parameters()), torch.zeros(0)).device.type != "cpu":
        model = copy.deepcopy(model).to("cpu")  # .to() acts in place: never move the caller's network
    example = torch.zeros((1,) + tuple(int(v) for v in input_shape_chw), dtype=torch.float32)
    from ..fileutil import remove_stale_temporaries

    remove_stale_temporaries(tempfile.gettempdir(), EXPORT_FILE_PREFIX, ".tmp.onnx")  # earlier versions' files
    graph = io.BytesIO()  # in memory: no file in the temporary folder, which may be full (EXPORT_FILE_PREFIX)
    # the TorchScript exporter: newer torch defaults to the dynamo one (and has the keyword), torch < 2.5 has
    # only the TorchScript one and refuses the keyword
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    # torch.onnx.export keeps process-wide state (GLOBALS.in_onnx_export): two engines exporting at once in one
    # process failed ("in_onnx_export must be False"). The tracer's warnings are hidden for this thread alone
    # (warnings.catch_warnings swapped the process-wide filters beside a batch's CT reader)
    with _EXPORT_LOCK, torch.no_grad(), warnings_hidden_in_this_thread(), eval_mode(model):
        torch.onnx.export(model, (example,), graph, input_names=["slices"], output_names=["logits"],
                          dynamic_axes={"slices": {0: "n"}, "logits": {0: "n"}},
                          opset_version=opset, **legacy)
    return graph.getvalue()


class OnnxExportError(RuntimeError):
    """PyTorch could not export the network to ONNX (:func:`export_onnx_bytes`): the engine names the export, not
    ONNX Runtime, as the step that failed."""


class OnnxSlicePredictor:
    """Callable ``(N, C, H, W) float32 -> logits (N, K, H, W) float32`` running on ONNX Runtime (CPU).

    One ONNX session per slice size ``(C, H, W)``, exported on first use (a volume has one size); the last
    :data:`MAX_SESSIONS` sizes are kept.
    """

    def __init__(self, model: "object", in_channels: int, threads: Optional[int] = None) -> None:
        if not onnx_available():
            raise InputError("The ONNX backend needs onnx and onnxruntime: pip install onnx onnxruntime "
                             "(or use --backend torch).")
        self.model = model
        self.in_channels = int(in_channels)
        self.threads = threads
        self._sessions = OrderedDict()  # (C, H, W) -> session, least recently used first

    def session_for(self, shape_chw: Tuple[int, int, int]) -> "object":
        """The ORT session for slices of ``shape_chw`` (exported and cached on first use)."""
        import onnxruntime as ort

        if shape_chw in self._sessions:
            self._sessions.move_to_end(shape_chw)
        else:
            if shape_chw[0] != self.in_channels:
                raise InputError(f"The network expects {self.in_channels} input channels, got {shape_chw[0]}.")
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = int(self.threads)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            log.debug("exporting the network to ONNX for slices %s", shape_chw)
            try:
                graph = export_onnx_bytes(self.model, shape_chw)
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the TorchScript exporter's DeprecationWarning made an
                # error by the caller's warning filters, or an exporter a later PyTorch no longer has: it was told
                # as "ONNX Runtime could not run this network"
                raise OnnxExportError(f"PyTorch could not export this network to ONNX ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from exc
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.popitem(last=False)
            self._sessions[shape_chw] = session
        return self._sessions[shape_chw]

    def __call__(self, x_nchw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x_nchw, dtype=np.float32)
        session = self.session_for(tuple(int(v) for v in x.shape[1:]))
        return session.run(None, {session.get_inputs()[0].name: x})[0]
