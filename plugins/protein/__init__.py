"""didi-seq protein domain: ESM alphabet, DPLM teachers, variable-length sampling, pLDDT."""
