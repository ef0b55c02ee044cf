"""Lambda function: the upload API (POST /uploads, GET /images/{id}). Everything is built once, at import."""

from atelier.entrypoints.api import api_handler

handler = api_handler()
