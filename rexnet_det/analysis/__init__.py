"""Analysis helpers behind tools/analysis: FLOPs, timing, detectors, rank."""
