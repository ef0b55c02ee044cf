"""The domain: keys, jobs and their status, upload policy, limits, style options, the error vocabulary.

Pure Python: no AWS, no OpenCV, nothing read from the environment here (see atelier.config)."""
