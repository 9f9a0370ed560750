"""pe-hooks benchmarks: hook overhead and sweep speed, measured as ratios in one interleaved run."""
