"""Training of slice-based (2D / 2.5D) liver and tumor segmentation models.

Import-light on purpose: ``import LiverTumorSegLib.training`` does not import torch. Import the
submodules you need:

* :mod:`.config` -- ``TrainConfig`` (YAML/JSON loadable, CLI overrides);
* :mod:`.datasets` -- LiTS / MSD Task03 / 3D-IRCADb-01 / CSV discovery, ``Case``, ``load_case``;
* :mod:`.splits` -- patient-level hold-out and k-fold splits;
* :mod:`.slice_cache` -- memory-mapped per-case cache of preprocessed slices;
* :mod:`.sampling` -- liver/tumor-biased patch sampling (torch ``Dataset``);
* :mod:`.losses`, :mod:`.optim` -- losses, optimisers, LR schedules;
* :mod:`.checkpoint`, :mod:`.callbacks`, :mod:`.distributed`, :mod:`.logs` -- training machinery;
* :mod:`.trainer` -- ``train(config)``: the loop (DDP via torchrun) and the model package at the end;
* :mod:`.crossval` -- ``run_crossval(config, out_dir, progress=None, cancel=None)``: all folds and a metrics table.
"""
