"""PLUTO training with Lightning (spec/pluto.md section 4; stage ``train``, ``pluto-dvc train``).

- ``data``: the log-level split of the cache as rank-aware batched loaders (``PlutoDataModule``).
- ``targets``, ``losses``, ``metrics``: pure functions of tensors (shapes in their docstrings).
- ``contrastive``: contrastive imitation learning's positives and negatives, on flat batches.
- ``optim``: AdamW decay groups and the warm-up + cosine schedule.
- ``module``: the LightningModule (one ``_step``; the NaN / inf guard).
- ``tracking``: MLflow (SQLite store) and dvclive loggers.
- ``checkpoints``: portable, byte-reproducible copies of Lightning checkpoints (the output's).
- ``run``: one run end to end: resume, outputs, summary (``run_training``).
"""
