"""Test-split evidence: metrics with intervals, slices, the error gallery, saliency, the gate."""
