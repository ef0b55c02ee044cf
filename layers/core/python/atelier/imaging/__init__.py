"""Pixels: the header probe and container walk, decoding, encoding, the perceptual hash, the CPU styles."""
