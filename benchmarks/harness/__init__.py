"""The side-by-side benchmark harness: tmail and its peers under the same load."""
