"""curvlab: sweep and measure the optimization geometry of neural networks."""

__version__ = "0.1.0"
