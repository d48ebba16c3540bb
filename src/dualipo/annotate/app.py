"""The annotation web app (FastAPI): one page, a JSON API and the videos.

    GET  /                    the page (static; every prompt and reason is set as text by its script)
    GET  /api/next            the next item for this tab (?session=&annotator=): prompt, dimension, videos, options,
                              progress; {"done": true} when the annotator has labelled every item
    POST /api/label           {item, label, reason, annotator, session}: 200 and the stored record, 409 if this
                              annotator labelled the item already, 422 for anything malformed (nothing written)
    POST /api/skip            {item, session}: the item goes to the back of this tab's queue
    POST /api/undo            {session, annotator}: removes this tab's latest label and returns its item again
    GET  /videos/{name}       a video of one of the items, by its path under the root; anything else is 404

Two tabs never get the same item at once: `next` leases the item to the asking tab for `LEASE_S` seconds.
With a token, every request must carry it (`X-Token` header or `?token=`), else 401.
"""

from __future__ import annotations

import hmac
import threading
import time
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dualipo.annotate.items import Item
from dualipo.annotate.store import DuplicateLabel, LabelStore
from dualipo.critics.prompts import QUESTIONS

LEASE_S = 600.0
PAGE = Path(__file__).parents[1] / "templates" / "annotate.html"
Name = Annotated[str, Field(max_length=64, pattern=r"^[\w .@-]*$")]
Session = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelIn(_Body):
    item: Annotated[str, Field(min_length=1, max_length=64)]
    label: Annotated[str, Field(min_length=1, max_length=16)]
    reason: Annotated[str, Field(max_length=4000)] = ""
    annotator: Name = ""
    session: Session


class SkipIn(_Body):
    item: Annotated[str, Field(min_length=1, max_length=64)]
    session: Session


class UndoIn(_Body):
    session: Session
    annotator: Name = ""


class Queue:
    """Which item each tab sees next: not labelled by its annotator, not leased to another tab, skipped last."""

    def __init__(self, items: list[Item], store: LabelStore):
        self.items, self.store, self.ids = items, store, {it.id for it in items}
        self.leases: dict[str, tuple[str, float]] = {}  # item id -> (session, expiry)
        self.skipped: dict[str, list[str]] = {}  # session -> item ids, oldest first
        self.lock = threading.RLock()  # the endpoints run in a thread pool

    def next(self, session: str, annotator: str) -> Item | None:
        with self.lock:
            return self._next(session, annotator)

    def _next(self, session: str, annotator: str) -> Item | None:
        done, now = self.store.labelled(annotator), time.monotonic()
        free = [it for it in self.items if it.id not in done and
                (it.id not in self.leases or self.leases[it.id][0] == session or self.leases[it.id][1] < now)]
        skipped = self.skipped.get(session, [])
        free.sort(key=lambda it: skipped.index(it.id) + 1 if it.id in skipped else 0)  # stable: skipped last
        for it in free:
            if self.leases.get(it.id, ("", 0))[0] == session:  # what this tab was shown and has not labelled
                return it
        if not free:
            return None
        self._release(session)
        self.leases[free[0].id] = (session, now + LEASE_S)
        return free[0]

    def release(self, session: str) -> None:
        with self.lock:
            self._release(session)

    def _release(self, session: str) -> None:
        for iid in [i for i, (s, _) in self.leases.items() if s == session]:
            del self.leases[iid]

    def progress(self, annotator: str) -> dict:
        return {"labelled": len(self.store.labelled(annotator) & self.ids), "total": len(self.items)}


def create_app(items: list[Item], store: LabelStore, root: str | Path, token: str = "") -> FastAPI:
    """The app over `items`, writing to `store`, serving only the items' videos under `root`."""
    root = Path(root).resolve()
    app = FastAPI(title="dualipo annotate", docs_url=None, redoc_url=None, openapi_url=None)
    _require_token(app, token)
    _file_routes(app, items, root)
    _item_routes(app, Queue(items, store), root)
    return app


def _require_token(app: FastAPI, token: str) -> None:
    @app.middleware("http")
    async def require_token(request: Request, call_next):
        given = request.headers.get("x-token") or request.query_params.get("token") or ""
        if token and not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "a valid token is required (X-Token header or ?token=)"}, 401)
        return await call_next(request)


def _file_routes(app: FastAPI, items: list[Item], root: Path) -> None:
    """The page and the items' videos (nothing else under root)."""
    served = {str(Path(v).relative_to(root)): Path(v) for it in items for v in it.videos}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/videos/{name:path}")
    def video(name: str) -> FileResponse:
        path = served.get(name)
        if path is None or not path.resolve().is_relative_to(root) or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path, media_type="video/mp4")


def _item_routes(app: FastAPI, queue: Queue, root: Path) -> None:
    """The JSON API: next, label, skip, undo."""
    store, by_id = queue.store, {it.id: it for it in queue.items}

    def view(it: Item | None, annotator: str) -> dict:
        if it is None:
            return {"done": True, **queue.progress(annotator)}
        return {"done": False, "item": it.id, "mode": it.mode, "prompt": it.prompt, "dimension": it.dimension,
                "question": QUESTIONS[it.dimension], "options": list(it.options),
                "videos": ["videos/" + str(Path(v).relative_to(root)) for v in it.videos],
                **queue.progress(annotator)}

    @app.get("/api/next")
    def next_item(session: Session, annotator: Annotated[Name, Query()] = "") -> dict:
        return view(queue.next(session, annotator), annotator)

    @app.post("/api/label")
    def label(body: LabelIn) -> dict:
        it = by_id.get(body.item)
        if it is None:
            raise HTTPException(422, f"unknown item {body.item!r}")
        try:
            rec = store.add(it, body.label, body.reason, body.annotator, body.session)
        except DuplicateLabel as e:
            raise HTTPException(409, str(e)) from None
        except ValueError as e:  # a label that is not one of the item's options
            raise HTTPException(422, str(e)) from None
        with queue.lock:
            queue.leases.pop(it.id, None)
        return {"stored": rec, **queue.progress(body.annotator)}

    @app.post("/api/skip")
    def skip(body: SkipIn) -> dict:
        if body.item not in by_id:
            raise HTTPException(422, f"unknown item {body.item!r}")
        with queue.lock:
            lst = queue.skipped.setdefault(body.session, [])
            if body.item in lst:
                lst.remove(body.item)
            lst.append(body.item)
            queue.release(body.session)
        return {"skipped": body.item}

    @app.post("/api/undo")
    def undo(body: UndoIn) -> dict:
        removed = store.undo(body.session)
        if removed is None:
            raise HTTPException(409, "nothing to undo in this tab")
        it = by_id.get(removed.get("item", ""))
        with queue.lock:
            queue.release(body.session)
            if it is not None:
                queue.leases[it.id] = (body.session, time.monotonic() + LEASE_S)
        return {"undone": removed, "next": view(it or queue.next(body.session, body.annotator), body.annotator)}
