"""The anime handler's model variant: from the key's folder, the object's metadata, or the default."""

from __future__ import annotations


def test_anime_variant_comes_from_the_folder_the_metadata_or_the_default() -> None:
    from atelier.entrypoints.lambda_anime import variant

    assert variant("incoming/anime/paprika/a.jpg", {}, "animeganv2-dev") == "paprika"
    assert (
        variant("incoming/anime/holiday/a.jpg", {"Model": "animeganv2_hayao"}, "animeganv2-dev")
        == "animeganv2_hayao"
    )
    options = '{"anime": {"model": "celeba_distill"}}'
    assert variant("incoming/all/u/alice/x/a.jpg", {"options": options}, "animeganv2-dev") == "celeba_distill"
    assert variant("incoming/anime/a.jpg", {"model": "no-such-model"}, "animeganv2-dev") == "animeganv2-dev"
