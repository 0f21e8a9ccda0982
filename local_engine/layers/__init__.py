"""Building blocks shared by decoders: the KV cache and the per-step batch description."""
