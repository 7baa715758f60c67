"""Which exceptions are user-facing (printed as one line, non-zero exit) rather than bugs."""

from __future__ import annotations


def user_error_types() -> tuple[type[BaseException], ...]:
    from gainakt.data import DataError
    from harness.config.build import ConfigError
    from harness.folder.experiment import ExperimentError
    from harness.run.datasets import DatasetError
    from harness.run.launcher import LaunchError

    types: list[type[BaseException]] = [ConfigError, DataError, DatasetError, ExperimentError, LaunchError]
    from harness.sweep.spec import SweepError

    types.append(SweepError)
    try:
        from harness.docker.containers import ContainerError
    except ImportError:  # pragma: no cover
        pass
    else:
        types.append(ContainerError)
    return tuple(types)


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, user_error_types())
