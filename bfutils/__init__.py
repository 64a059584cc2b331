"""bfutils: helpers for notebooks that tell whether a biological image was derived from another."""

__version__ = "0.1.0"
