"""``make bench`` (``python -m benchmarks``): side-by-side performance ratios written to benchmarks/results.md.

Every figure is a ratio of two things measured in the same run on the same machine, alternated (A, B, A, B, ...)
and summarised by the median of at least three repetitions; the machine, torch version, threads and the load
average are recorded with it. Sections: overhead, datapath, retrieval, precision, scaling.
"""
