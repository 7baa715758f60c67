"""Experiment harness: configs, audit-grade experiment folders, reproduction and containers."""

__version__ = "0.1.0"
