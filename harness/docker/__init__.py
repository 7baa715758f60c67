"""Docker: the pinned image, the training and verifier containers, the docker runtime."""
