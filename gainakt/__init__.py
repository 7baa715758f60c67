"""GainAKT2Exp: a transformer knowledge-tracing model with mastery and learning-gain heads."""

from typing import Any

__all__ = ["GainAKT2Exp", "load_model", "train_seed"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy so that `import gainakt.data` does not pay for building the model module.
    if name == "GainAKT2Exp":
        from gainakt.model import GainAKT2Exp

        return GainAKT2Exp
    if name == "load_model":
        from gainakt.checkpoint import load_model

        return load_model
    if name == "train_seed":
        from gainakt.train import train_seed

        return train_seed
    raise AttributeError(name)
