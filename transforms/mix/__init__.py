"""The mixer: training sets from curated sources under an exact ceiling on the synthetic fraction."""
