"""Lambda function: the watercolor style. Everything is built once per container, at import."""

from atelier.entrypoints.lambda_style import style_handler

handler = style_handler("watercolor")
