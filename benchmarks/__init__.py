"""``make bench`` (``python -m benchmarks``): side-by-side performance ratios written to benchmarks/results.md.

Every figure is a ratio of two things measured in the same run on the same machine, alternated (B A, A B, ...)
and summarised by the median of at least three repetitions; the machine, torch version, threads and the load
average are recorded with it. Sections (one module each in benchmarks/sections/): overhead, datapath, retrieval,
precision, scaling, and recipe (one run of the fast CIFAR-10 recipe, no baseline).
"""
