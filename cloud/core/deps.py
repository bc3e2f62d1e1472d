"""`Annotated` dependency aliases shared by every router (one place, STYLE.md).

The app factory (`cloud.app.create_app`) puts what the process shares on
``app.state``: `settings`, `engine`, `sessions` (a sessionmaker), `store`
(the time-series store) and `authorizer`. Routes never reach into
``app.state`` themselves; they take these:

- `SettingsDep`: the `Settings`;
- `DbSession`: a session for reading, closed (and rolled back) after the
  request — nothing it changes is committed;
- `Sessions`: the session factory, for routes that change data: they run
  ``with unit_of_work(sessions) as session:`` so the commit happens before the
  response is built and a failed commit is the client's error response;
- `Store`: the `TimeSeriesStore`;
- `JsonBody`: a guard for routes with a JSON body: any other content type is
  415 instead of a confusing 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from cloud.core.config import Settings
from cloud.timeseries.store import TimeSeriesStore

__all__ = ["DbSession", "JsonBody", "Sessions", "SettingsDep", "Store", "require_json_body"]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def _read_session(request: Request) -> Iterator[Session]:
    session = _sessions(request)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def _store(request: Request) -> TimeSeriesStore:
    store: TimeSeriesStore = request.app.state.store
    return store


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def require_json_body(request: Request) -> None:
    """Refuse a request body that is not JSON with 415.

    Raises:
        HTTPException: 415 when a body is present with another content type.
    """
    has_body = request.headers.get("content-length", "0") != "0" or (
        "chunked" in request.headers.get("transfer-encoding", "").lower()
    )
    content_type = request.headers.get("content-type", "")
    if has_body and not _is_json(content_type):
        shown = content_type or "none"
        raise HTTPException(415, f"this route takes application/json, not {shown}")


SettingsDep = Annotated[Settings, Depends(_settings)]
Sessions = Annotated[sessionmaker[Session], Depends(_sessions)]
DbSession = Annotated[Session, Depends(_read_session)]
Store = Annotated[TimeSeriesStore, Depends(_store)]
JsonBody = Depends(require_json_body)
