"""Inference: slice engine, two-stage, post-processing, lesion report, one-call API.

Importing this package is light; torch is imported when an engine is built.

```python
from LiverTumorSegLib.inference import Segmenter, SegmentationOptions, SliceInferenceEngine, segment_volume, segment_file
segmenter = Segmenter(SegmentationOptions(model="default", device="auto"))   # loads once, segments many
result = segmenter.segment_volume(volume, progress=cb, cancel=token)         # or .segment_file(in, out, ...)
engine = SliceInferenceEngine(package, device="auto")        # package: ModelPackage or name/path
labels = engine.predict(volume, progress=cb, cancel=token)   # (z, y, x) uint8 in the input geometry
result = segment_volume(volume, package)                      # .labels, .report (lesion report dict)
segment_file("ct.nii.gz", "seg.nii.gz", model="default", report_path="report.json")
```
"""
from .api import segment_file, segment_volume
from .options import SegmentationOptions
from .segmenter import SegmentationResult, Segmenter
from .lesion_report import lesion_report, write_report
from .postprocess import PostprocessingOptions, postprocess_labels


def __getattr__(name):  # lazy: the engine imports torch
    if name == "SliceInferenceEngine":
        from .engine import SliceInferenceEngine

        return SliceInferenceEngine
    if name == "segment_two_stage":
        from .twostage import segment_two_stage

        return segment_two_stage
    raise AttributeError(name)


__all__ = ["SliceInferenceEngine", "Segmenter", "SegmentationOptions", "segment_volume", "segment_file", "SegmentationResult", "PostprocessingOptions",
           "postprocess_labels", "lesion_report", "write_report", "segment_two_stage"]
