"""The model core, in transformers' convention: configuration, feature extractor, modeling (standard and lean paths
over shared layers), clip readouts, the Hub layout and checkpoint conversion."""
