"""Evaluation beyond training metrics: the Audio Needle In A Haystack test (`niah`)."""
