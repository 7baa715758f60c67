"""Running an experiment: the launcher engine, seed workers, data, environment capture, logs."""
