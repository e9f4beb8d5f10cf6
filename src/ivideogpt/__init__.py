"""iVideoGPT: an interactive, scalable video world model."""

__version__ = "0.1.0"
