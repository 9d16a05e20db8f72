"""Audio in: reading files (`io`), resampling (`resample`), the Kaldi fbank (`fbank`), its block-wise stream
(`stream`) and dataset audio values (`decoding`). Knows nothing of the model."""
