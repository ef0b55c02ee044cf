"""Model builders, converters and the fetcher behind `atelier models`."""
