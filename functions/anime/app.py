"""Lambda function: the anime style (AnimeGANv2 on ONNX Runtime). Built once per container, at import."""

from atelier.entrypoints.lambda_anime import anime_handler

handler = anime_handler()
