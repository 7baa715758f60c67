"""The experiment folder: paths, locks, atomic writes, manifest, artifacts, checkpoints, plots."""
