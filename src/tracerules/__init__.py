"""tracerules: a declarative rules engine for rapid follow-up of astronomical transients."""

__version__ = "0.1.0"
