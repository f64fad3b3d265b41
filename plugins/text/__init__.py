"""didi-seq text domain: English text with a byte-level BPE, shipped corpus and teacher."""
