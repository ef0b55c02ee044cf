"""The sample events of events/, and the sample photo whose MD5 is each S3 event's ETag (events/README.md)."""

from pathlib import Path

EVENTS = Path(__file__).resolve().parent.parent / "events"
PHOTO_OF = {
    "sketch.json": "chelsea.jpg",
    "pencil.json": "astronaut.jpg",
    "oil.json": "coffee.png",
    "watercolor.json": "rocket.webp",
    "anime.json": "chelsea.jpg",
}
