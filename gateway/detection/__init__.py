"""Fingerprints, terms and record sets: finding registered material in text, without I/O."""
