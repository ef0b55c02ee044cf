"""Entry points: each builds everything it needs (config, clients, adapters) in one place and serves one
kind of event: the style and anime Lambdas, the upload API, the dead-letter marker, the GPU worker."""
