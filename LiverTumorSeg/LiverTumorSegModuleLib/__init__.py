"""Widget-side helpers of the LiverTumorSeg Slicer module (Qt-free, importable and testable without Slicer).

* :mod:`.dependencies` - which Python packages are missing and installing them after the user agrees;
* :mod:`.childprocess` - start, read and kill the child process that segments (``--progress json`` lines);
* :mod:`.job` - one segmentation run: the CT handed to the child, its progress polled, its results put in MRML;
* :mod:`.panel_text` - the texts the panel shows (model, device, preprocessing, results).
"""
