"""KeychainDB: a strongly consistent, replicated key-value store built on CRAQ."""

__version__ = "0.1.0"
