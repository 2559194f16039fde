"""Widget-side helpers of the LiverTumorSeg Slicer module (Qt-free, importable and testable without Slicer).

* :mod:`.dependencies` - which Python packages are missing and installing them after the user agrees;
* :mod:`.background` - run a function in a worker thread, hand progress and the result back via a queue;
* :mod:`.job` - the segmentation run split into a worker part (arrays only) and a main-thread part (MRML);
* :mod:`.panel_text` - the texts the panel shows (model, device, preprocessing, results).
"""
