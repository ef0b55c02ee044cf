"""Neural models on ONNX Runtime: AnimeGANv2 (anime), tiled EDSR super-resolution, the model registry."""
