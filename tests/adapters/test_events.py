"""events/: one sample event per zip function of template.yaml, each answered by its handler under moto.

These are the files `sam local invoke <Function> -e events/<name>.json` takes (events/README.md); here each
runs through the very handler its function's app.py builds, with the sample photo its README row names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from atelier.entrypoints import wiring
from atelier.entrypoints.api import api_handler
from atelier.entrypoints.deadletter import deadletter_handler
from atelier.entrypoints.lambda_anime import anime_handler
from atelier.entrypoints.lambda_style import style_handler
from atelier_dev.local.cfn import LocalTemplate
from atelier_dev.models.cli import main as models_main
from tests.aws import MotoAws, lambda_context
from tests.events import EVENTS, PHOTO_OF

ROOT = Path(__file__).resolve().parents[2]
EVENT_OF = {
    "SketchFunction": "sketch.json",
    "PencilFunction": "pencil.json",
    "OilFunction": "oil.json",
    "WatercolorFunction": "watercolor.json",
    "AnimeFunction": "anime.json",
    "ApiFunction": "api.json",
    "DeadLetterFunction": "deadletter.json",
}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def upload(moto_aws: MotoAws, s3_event: dict[str, Any], photo: str) -> dict[str, Any]:
    """Put the sample photo at the event's key, as its README row says, and point the event at moto."""
    body = (ROOT / "samples" / photo).read_bytes()
    obj = s3_event["detail"]["object"]
    assert obj["etag"] == hashlib.md5(body).hexdigest() and obj["size"] == len(body)
    put = moto_aws.s3.put_object(Bucket=moto_aws.bucket, Key=unquote_plus(obj["key"]), Body=body)
    assert put["ETag"].strip('"') == obj["etag"]  # what S3 reports for it, as the event says
    s3_event["detail"]["bucket"]["name"] = moto_aws.bucket
    return s3_event


def uploaded(moto_aws: MotoAws, name: str) -> dict[str, Any]:
    return upload(moto_aws, event(name), PHOTO_OF[name])


def test_every_zip_function_of_the_template_has_its_sample_event() -> None:
    functions = {f.logical_id for f in LocalTemplate.from_file(ROOT / "template.yaml").functions()}
    assert functions == set(EVENT_OF)
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EVENT_OF.values())


@pytest.mark.parametrize("style", ["sketch", "pencil", "oil", "watercolor"])
def test_a_style_event_renders_its_sample_photo(moto_aws: MotoAws, style: str) -> None:
    handler = style_handler(style, wiring.build(moto_aws.config()))
    result = handler(uploaded(moto_aws, f"{style}.json"), lambda_context(f"{style.title()}Function"))
    assert result["state"] == "done" and result["style"] == style
    assert moto_aws.s3.head_object(Bucket=moto_aws.bucket, Key=result["output_key"])["ContentLength"] > 1000


def test_the_anime_event_renders_with_the_model_its_key_names(
    moto_aws: MotoAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_main(["--cache", str(tmp_path), "build-dev", "--only", "animeganv2-dev"])
    monkeypatch.setenv("ATELIER_MODEL_DIR", str(tmp_path))
    handler = anime_handler(wiring.build(moto_aws.config()), env={"ATELIER_ANIME_PROVIDER": "cpu"})
    result = handler(uploaded(moto_aws, "anime.json"), lambda_context("AnimeFunction"))
    assert (result["state"], result["style"], result["model"]) == ("done", "anime", "animeganv2-dev")


def test_the_api_event_is_answered_with_the_style_catalogue(moto_aws: MotoAws) -> None:
    """GET /styles reads no table: the API answers its sample event with nothing uploaded."""
    response = api_handler(wiring.build(moto_aws.config()))(event("api.json"), lambda_context("ApiFunction"))
    assert response["statusCode"] == 200
    names = [s["name"] for s in json.loads(response["body"])["styles"]]
    assert names == ["sketch", "pencil", "oil", "watercolor", "anime", "upscale"]


def test_the_dead_letter_event_marks_the_sketch_it_carries_failed(moto_aws: MotoAws) -> None:
    record = event("deadletter.json")
    record["requestPayload"] = upload(moto_aws, record["requestPayload"], PHOTO_OF["sketch.json"])
    env = {
        **moto_aws.env,
        "ATELIER_DEAD_LETTER_QUEUE_URL": moto_aws.queue_urls["RenderDeadLetterQueue"],
        "ATELIER_FUNCTION_PREFIX": "atelier-",  # the record's functionArn names atelier-sketch
    }
    marker = deadletter_handler(wiring.build(moto_aws.config()), env=env)
    result = marker(record, lambda_context("DeadLetterFunction"))
    assert (result["state"], result["style"], result["reason"]) == ("failed", "sketch", "timed_out")
    (kept,) = moto_aws.messages("RenderDeadLetterQueue")
    assert kept["job"]["image_id"] == result["image_id"]
