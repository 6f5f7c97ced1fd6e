# cython: language_level=3
"""Compiled plant kernels (struct-of-arrays over typed memoryviews)."""


def compiled():
    """True: lets tests prove the extension was built and imported."""
    return True
