"""smartlock: customs smart-lock transit monitoring pipeline."""

__version__ = "0.1.0"
