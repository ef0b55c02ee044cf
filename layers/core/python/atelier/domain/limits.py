"""Input caps: what a file may be and ask of the decoder (read from the environment by atelier.config)."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024
MP = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Caps applied to every input before and while it is decoded."""

    max_bytes: int = 40 * MB
    max_pixels: int = 50 * MP
    max_side: int = 20_000
    working_pixels: int = 24 * MP
    # Work a valid file may ask of the decoder. A PNG's image data may inflate to this much more than its
    # rows need (libpng reads the excess with a warning; a 2.7 MB IDAT can inflate to 2.7 GB).
    max_extra_inflate: int = 8 * MB
    # A progressive JPEG re-reads its coefficients once per scan; encoders write 10 to 20.
    max_scans: int = 100
    # Reading the structure and decoding, per megapixel (1 MP at least); decoders take 10 to 40 ms/MP here.
    decode_ms_per_mp: int = 1000
