"""Load with faults on the local stack, and the checks that every job ended as it should.

Uploads go through the upload API as a web page sends them (``POST /uploads``, then the presigned POST to
SeaweedFS), with mixed sizes and formats, and with:

- hostile files (10 %): a truncated JPEG, HTML named ``.jpg``, a PNG whose header claims 3.6 gigapixels;
- duplicates (10 %): the same event delivered again after the job ended, or twice at once;
- a missing model (5 %): anime asked with a model this stack does not have;
- an invocation killed mid-render (5 %): the local equivalent of a Lambda crash (SIGKILL of the
  function's execution environment); Lambda's retry must render it;
- the dispatcher killed and restarted once (its inbox of accepted events survives it), and SeaweedFS
  stopped and restarted once, while uploads are in flight.

:func:`check` then holds the run to the rules: every (image, style) ended within the bound; each one that
should render has exactly one render; no rejected one has a render; no upload is lost; the dead-letter
queue holds exactly the failed ones. :func:`summary` gives the throughput and the times to a terminal
state (``bench/faults.py`` prints them; ``tests/integration/test_faults.py`` runs a small one).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import requests

from atelier.domain import status
from atelier.imaging import styles

KINDS = ("photo", "hostile", "duplicate", "concurrent_duplicate", "missing_model", "killed")
MISSING_MODEL = "face_paint_512_v2"  # in the manifest, never installed on the local stack
SAMPLES = Path(__file__).resolve().parents[3] / "samples"


@dataclass
class Upload:
    """One planned upload, what it should end as, and what became of it."""

    n: int
    kind: str
    filename: str
    content_type: str
    body: bytes
    styles: list[str]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    expect: dict[str, str] = field(default_factory=dict)  # style -> terminal state
    image_id: str = ""
    key: str = ""
    uploaded_at: float = 0.0  # epoch seconds: the presigned POST answered
    ended_at: dict[str, float] = field(default_factory=dict)  # style -> epoch seconds it ended (finished_at)
    view: dict[str, Any] = field(default_factory=dict)


def _photo(rng: random.Random, long_side: int) -> np.ndarray:
    """A crop of a sample photo at ``long_side`` px, its own crop each time (no near-duplicates)."""
    names = ("chelsea.jpg", "astronaut.jpg", "coffee.png", "rocket.webp")
    img = cv2.imread(str(SAMPLES / rng.choice(names)), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    ch, cw = int(h * rng.uniform(0.55, 0.9)), int(w * rng.uniform(0.55, 0.9))
    y, x = rng.randrange(0, h - ch + 1), rng.randrange(0, w - cw + 1)
    crop = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    scale = long_side / max(ch, cw)
    size = (max(8, round(cw * scale)), max(8, round(ch * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _encode(img: np.ndarray, fmt: str) -> tuple[bytes, str]:
    ext, ctype, params = {
        "jpeg": (".jpg", "image/jpeg", [cv2.IMWRITE_JPEG_QUALITY, 88]),
        "png": (".png", "image/png", []),
        "webp": (".webp", "image/webp", [cv2.IMWRITE_WEBP_QUALITY, 85]),
    }[fmt]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"could not encode {fmt}")
    return buf.tobytes(), ctype


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height``, then nothing: a pixel bomb's header."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


def plan(count: int, seed: int = 0, sizes: Sequence[int] = (320, 640, 1024, 1600, 2400)) -> list[Upload]:
    """``count`` uploads: 10 % hostile, 10 % duplicates (half of them at once), 5 % asking for a missing
    model, 5 % to be killed mid-render, the rest plain photos; styles, sizes and formats drawn at random."""
    rng = random.Random(seed)
    shares = {"hostile": 0.10, "duplicate": 0.05, "concurrent_duplicate": 0.05, "missing_model": 0.05}
    shares["killed"] = 0.05
    kinds: list[str] = []
    for kind, share in shares.items():
        kinds += [kind] * max(1, round(count * share))
    kinds += ["photo"] * (count - len(kinds))
    rng.shuffle(kinds)
    out = []
    for n, kind in enumerate(kinds[:count]):
        chosen = rng.sample(styles.CPU_STYLES, rng.randint(1, 3))
        fmt = rng.choice(("jpeg", "jpeg", "png", "webp"))
        body, ctype = _encode(_photo(rng, rng.choice(sizes)), fmt)
        name = f"load-{n:04d}{ {'image/jpeg': '.jpg', 'image/png': '.png', 'image/webp': '.webp'}[ctype] }"
        upload = Upload(n, kind, name, ctype, body, chosen)
        if kind == "hostile":
            broken = rng.choice(("truncated", "html", "bomb"))
            if broken == "truncated":
                whole, _ = _encode(_photo(rng, 1024), "jpeg")
                upload.body, upload.content_type, upload.filename = (
                    whole[: len(whole) // 3],
                    "image/jpeg",
                    name,
                )
            elif broken == "html":
                upload.body = b"<!doctype html><html><body>not a photo</body></html>"
                upload.content_type, upload.filename = "image/jpeg", f"load-{n:04d}.jpg"
            else:
                upload.body, upload.content_type = _png_claiming(60000, 60000), "image/png"
                upload.filename = f"load-{n:04d}.png"
            upload.expect = {s: "rejected" for s in chosen}
        elif kind == "missing_model":
            upload.styles = [chosen[0], "anime"]
            upload.options = {"anime": {"model": MISSING_MODEL}}
            upload.expect = {chosen[0]: "done", "anime": "failed"}
        elif kind == "killed":  # large, so that its renders are running when the killer looks
            upload.body, upload.content_type = _encode(_photo(rng, max(sizes)), "jpeg")
            upload.filename = f"load-{n:04d}.jpg"
            upload.styles = rng.sample(("oil", "watercolor", "pencil"), 3)
            upload.expect = {s: "done" for s in upload.styles}
        else:
            if kind == "photo" and rng.random() < 0.15:
                upload.styles = [*chosen, "anime"]  # the stack's own (installed) anime model
            upload.expect = {s: "done" for s in upload.styles}
        out.append(upload)
    return out


class Client:
    """The upload API over HTTP, as the web page uses it; retries what a page would retry."""

    def __init__(self, api_url: str, token: str = "local-dev") -> None:
        self.api = api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _retry(
        self, call: Callable[[], requests.Response], ok: Sequence[int], tries: int = 40
    ) -> requests.Response:
        for attempt in range(tries):
            try:
                response = call()
                if response.status_code in ok:
                    return response
                if response.status_code < 500:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            except (requests.ConnectionError, requests.Timeout):
                pass  # the store is restarting, or the API is slow under the load: try again, as a page would
            time.sleep(min(0.25 * 2**attempt, 2.0))
        raise RuntimeError("gave up after retries")

    def upload(self, upload: Upload) -> None:
        """POST /uploads, then the file to the presigned POST."""
        body: dict[str, Any] = {
            "filename": upload.filename,
            "content_type": upload.content_type,
            "size": len(upload.body),
            "styles": upload.styles,
        }
        if upload.options:
            body["options"] = upload.options
        grant = self._retry(
            lambda: self.session.post(f"{self.api}/uploads", json=body, timeout=30), (201,)
        ).json()
        upload.image_id, upload.key = grant["image_id"], grant["key"]
        form = grant["upload"]

        def post() -> requests.Response:
            files = {"file": (upload.filename, upload.body, upload.content_type)}
            return requests.post(form["url"], data=form["fields"], files=files, timeout=30)

        self._retry(post, (200, 201, 204))
        upload.uploaded_at = time.time()

    def view(self, image_id: str) -> dict[str, Any]:
        """GET /images/{id}."""
        answer: dict[str, Any] = self._retry(
            lambda: self.session.get(f"{self.api}/images/{image_id}", timeout=30), (200,)
        ).json()
        return answer


@dataclass
class Run:
    """What a run did, for :func:`check` and :func:`summary`."""

    uploads: list[Upload]
    started: float
    finished: float
    killed: list[str] = field(default_factory=list)  # request ids killed mid-render
    restarts: dict[str, float] = field(default_factory=dict)  # what restarted, seconds it took
    renders: dict[str, list[str]] = field(default_factory=dict)  # image id -> keys under renders/<id>/
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False


def run(
    uploads: list[Upload],
    client: Client,
    *,
    dispatcher: Callable[[], Any],
    restart_dispatcher: Callable[[], Any],
    restart_s3: Callable[[], float],
    list_renders: Callable[[str], list[str]],
    dead_letters: Callable[[], list[dict[str, Any]]],
    bound: float = 240.0,
    workers: int = 6,
    poll: float = 1.0,
    poll_batch: int = 10,
    killable: Sequence[str] = ("SketchFunction", "PencilFunction", "OilFunction", "WatercolorFunction"),
    rate: float | None = None,
) -> Run:
    """Upload everything (``workers`` at a time) with the faults above, then wait for every job to end.

    ``dispatcher()`` is the running dispatcher (it changes at the restart), ``restart_dispatcher()`` kills
    it and starts another on the same state, ``restart_s3()`` restarts SeaweedFS, ``list_renders(id)``
    lists ``renders/<id>/``, and ``dead_letters()`` drains the render dead-letter queue. ``rate`` paces the
    uploads (per second; None: all at once, a burst). Only invocations of
    the ``killable`` functions are killed: their retry must come after their killed copy's claim on the job
    has run out (its timeout), as Lambda's retries (a minute, then two) come after a function's timeout.
    """
    result = Run(uploads, time.monotonic(), 0.0)
    killing = {u.n for u in uploads if u.kind == "killed"}
    to_kill: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def killer() -> None:  # kill the first invocation of each marked upload once it is rendering
        done_keys: set[str] = set()
        while not stop.is_set():
            try:
                running = dispatcher().running()
            except Exception:
                running = []
            for invocation, _pid in running:
                if invocation.function not in killable:
                    continue
                key = invocation.key or ""
                with lock:
                    hit = next((k for k in to_kill if k and k in key and k not in done_keys), None)
                if hit is not None:
                    time.sleep(random.uniform(0.0, 0.05))  # early in a render of a large photo
                    if dispatcher().kill(invocation.request_id):
                        done_keys.add(hit)
                        result.killed.append(invocation.request_id)
            stop.wait(0.02)

    def duplicate(upload: Upload) -> None:
        d = dispatcher()
        event = d.object_event(upload.key)
        if upload.kind == "concurrent_duplicate":
            threads = [threading.Thread(target=d.emit, args=(event,)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            d.emit(event)

    threading.Thread(target=killer, name="faults-killer", daemon=True).start()
    restart_at = {"dispatcher": len(uploads) * 2 // 5, "s3": len(uploads) * 3 // 5}
    sent = 0

    def send(upload: Upload) -> None:
        if upload.n in killing:
            with lock:
                to_kill.add(upload.filename)
        client.upload(upload)
        if upload.kind == "concurrent_duplicate":
            duplicate(upload)  # racing the dispatcher's own event for it

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = []
        for upload in uploads:
            futures.append(pool.submit(send, upload))
            sent += 1
            if rate:
                time.sleep(1.0 / rate)
            if sent == restart_at["dispatcher"]:
                started = time.monotonic()
                restart_dispatcher()
                result.restarts["dispatcher"] = time.monotonic() - started
            if sent == restart_at["s3"]:
                result.restarts["s3"] = restart_s3()
        for future in futures:
            future.result()

    deadline = time.monotonic() + bound
    duplicated: set[int] = set()
    turn = 0
    while time.monotonic() < deadline:
        open_ = [u for u in uploads if set(u.ended_at) != set(u.styles)]
        for upload in uploads:
            ended = set(upload.ended_at) == set(upload.styles)
            if upload.kind == "duplicate" and upload.n not in duplicated and ended:
                duplicated.add(upload.n)
                duplicate(upload)  # the same event again, after the job ended
        if not open_ and len(duplicated) == sum(u.kind == "duplicate" for u in uploads):
            break
        # a few views a round, in turn: polling every open upload at once would load the API more than
        # the renders; each view's finished_at says when a job ended, whenever it is read
        for upload in (open_[(turn + i) % len(open_)] for i in range(min(poll_batch, len(open_)))):
            _record_ends(upload, client.view(upload.image_id))
        turn += poll_batch
        time.sleep(poll)
    else:
        result.timed_out = True
    stop.set()
    dispatcher().wait_idle(timeout=bound)
    result.finished = time.monotonic()
    for upload in uploads:
        _record_ends(upload, client.view(upload.image_id))
        result.renders[upload.image_id] = list_renders(upload.image_id)
    result.dead_letters = dead_letters()
    return result


def _record_ends(upload: Upload, view: dict[str, Any]) -> None:
    from datetime import datetime

    upload.view = view
    for entry in view.get("styles", []):
        if entry["state"] in status.TERMINAL and entry.get("finished_at"):
            when = datetime.strptime(entry["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
            upload.ended_at[entry["style"]] = when


def check(result: Run) -> list[str]:
    """Every broken rule of the run, as sentences (empty: it held)."""
    problems = []
    if result.timed_out:
        problems.append("some jobs had not ended within the bound")
    failed_jobs: set[tuple[str, str]] = set()
    for upload in result.uploads:
        view, name = upload.view, f"{upload.filename} ({upload.kind}, {upload.image_id})"
        if view.get("state") != "complete":
            problems.append(f"{name}: the upload is {view.get('state')}, not complete")
        shown = {e["style"]: e for e in view.get("styles", [])}
        for style, want in upload.expect.items():
            got = shown.get(style, {}).get("state")
            if got != want:
                problems.append(
                    f"{name}: {style} is {got} ({shown.get(style, {}).get('message', '')}), not {want}"
                )
            if got == "failed":
                failed_jobs.add((upload.image_id, style))
        renders = sorted(k.rsplit("/", 1)[-1].split(".")[0] for k in result.renders.get(upload.image_id, []))
        should = sorted(s for s, e in upload.expect.items() if e == "done")
        if renders != should:
            problems.append(f"{name}: renders {renders}, expected exactly one each of {should}")
    lettered = [(d["job"]["image_id"], d["job"]["style"]) for d in result.dead_letters if "job" in d]
    if sorted(lettered) != sorted(failed_jobs):
        problems.append(
            f"dead-letter queue holds {sorted(lettered)}; the failed jobs are {sorted(failed_jobs)}"
        )
    if len(lettered) != len(result.dead_letters):
        problems.append("the dead-letter queue holds records of no job")
    return problems


def summary(result: Run) -> dict[str, Any]:
    """Counts, throughput and the times from upload to a terminal state (p50, p95, max; 1 s resolution)."""
    times = [max(0.0, t - u.uploaded_at) for u in result.uploads for t in u.ended_at.values()]
    times.sort()

    def pct(p: float) -> float:
        return times[min(len(times) - 1, round(p * (len(times) - 1)))] if times else float("nan")

    elapsed = result.finished - result.started
    jobs = sum(len(u.styles) for u in result.uploads)
    return {
        "uploads": len(result.uploads),
        "jobs": jobs,
        "kinds": {k: sum(u.kind == k for u in result.uploads) for k in KINDS},
        "killed": len(result.killed),
        "restarts_s": {k: round(v, 2) for k, v in result.restarts.items()},
        "seconds": round(elapsed, 1),
        "uploads_per_min": round(len(result.uploads) / elapsed * 60, 1),
        "jobs_per_min": round(jobs / elapsed * 60, 1),
        "p50_s": round(pct(0.5), 2),
        "p95_s": round(pct(0.95), 2),
        "max_s": round(times[-1], 2) if times else float("nan"),
        "mean_s": round(statistics.fmean(times), 2) if times else float("nan"),
        "dead_letters": len(result.dead_letters),
    }


def as_json(result: Run) -> str:
    """The summary and the problems, as JSON."""
    return json.dumps({"summary": summary(result), "problems": check(result)}, indent=2)


# Lambda's timing, scaled down: its retries (about a minute, then two) come after a copy that died holding
# the job has lost its claim on it (its function's timeout). A CPU render here takes a few seconds at most
# alone, but four share two cores under load; the dev anime model takes up to tens of seconds.
TIMEOUTS_S = {"AnimeFunction": 90.0, "DeadLetterFunction": 30.0}
CPU_TIMEOUT_S = 30.0
RETRY_DELAYS = (35.0, 100.0)  # the first after a CPU style's timeout, both after anime's


def dispatcher_options(stack: Any, state_dir: Path, max_workers: int = 4) -> dict[str, Any]:
    """How the scenario runs the stack's dispatcher: process isolation, a durable state, local timing."""
    functions = [fn.logical_id for fn in stack.template.functions()]
    return {
        "apply_env": False,
        "isolation": "process",
        "state_dir": state_dir,
        "max_workers": max_workers,
        "retry_delays": RETRY_DELAYS,
        "function_timeouts": {
            fn: TIMEOUTS_S.get(fn, CPU_TIMEOUT_S) for fn in functions if fn != "ApiFunction"
        },
    }


def drain(stack: Any, queue: str) -> list[dict[str, Any]]:
    """Every message of one of the stack's queues (a logical id), removed, as JSON."""
    url = stack.queue_urls[queue]
    out: list[dict[str, Any]] = []
    while True:
        got = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not got.get("Messages"):
            return out
        for message in got["Messages"]:
            out.append(json.loads(message["Body"]))
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def on_stack(
    stack: Any,
    uploads: list[Upload],
    state_dir: Path,
    *,
    max_workers: int = 4,
    bound: float = 300.0,
    rate: float | None = None,
) -> Run:
    """:func:`run` on a started :class:`~atelier_dev.local.stack.LocalStack` (its variables in os.environ):
    its dispatcher in process isolation on ``state_dir``, its API served on loopback."""
    from atelier_dev.local.api_server import serve_api

    options = dispatcher_options(stack, state_dir, max_workers)
    stack.start_dispatcher(**options)
    url, stop_api = serve_api(stack)

    def list_renders(image_id: str) -> list[str]:
        listed = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"renders/{image_id}/")
        return [o["Key"] for o in listed.get("Contents", [])]

    try:
        return run(
            uploads,
            Client(url + "/api"),
            dispatcher=lambda: stack.dispatcher,
            restart_dispatcher=lambda: stack.restart_dispatcher(abandon=True, **options),
            restart_s3=stack.restart_s3,
            list_renders=list_renders,
            dead_letters=lambda: drain(stack, "RenderDeadLetterQueue"),
            bound=bound,
            rate=rate,
        )
    finally:
        stop_api()
