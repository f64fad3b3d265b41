"""didi-seq-dna: an example third-party domain plugin for didi-seq (DNA over A, C, G, T)."""
