"""Datasets: real images for the RSC setting (:mod:`.images`) and Gaussian teachers for recovery."""
