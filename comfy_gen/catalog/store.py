"""``Catalog``: the generation index (record, query, favorites, rebuild).

Each call is one short transaction. Writes are upserts keyed on the
generation id (``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL),
so indexing the same sidecar twice, from two processes, or again during a
rebuild always ends in one row that says what the sidecar says.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from comfy_gen.catalog._engine import (WRITE_OPTION, create_catalog_engine, db_errors, display_url, migrate,
                                       sqlite_url)
from comfy_gen.catalog.models import CategoryRow, FavoriteRow, GenerationRow
from comfy_gen.catalog.records import (Favorite, Generation, check_feedback, check_generation_id, check_rating,
                                       check_tags, normalize_id, read_generation)
from comfy_gen.errors import FavoriteNotFound, GenerationNotFound, MetadataNotFound, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
_BATCH = 200  # rows per rebuild transaction: short write locks while a flow keeps indexing


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Catalog:
    """The index over stored outputs. ``Catalog.from_settings(settings)`` is the usual way in.

    ``output_dir`` is what ``rebuild()`` scans and what path-derived ids are relative to.
    """

    def __init__(self, url: str, *, output_dir: Path | str | None = None, busy_timeout: float = 30.0) -> None:
        self.url = display_url(url)  # never the password
        self.output_dir = Path(output_dir).expanduser().resolve() if output_dir is not None else None
        self._engine = create_catalog_engine(url, busy_timeout=busy_timeout)
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        try:
            migrate(self._engine, self.url)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Catalog":
        """PostgreSQL at COMFY_GEN_DATABASE_URL, else SQLite at ``settings.catalog_file()``."""
        return cls(default_catalog_url(settings), output_dir=settings.output_dir)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"

    @contextlib.contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with db_errors(self.url), Session(self._writer if write else self._engine,
                                          expire_on_commit=False) as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise CatalogUnavailable unless the database answers (health checks)."""
        with self._session() as session:
            session.execute(select(1))

    # --- indexing -------------------------------------------------------------------

    def record_sidecar(self, sidecar_path: Path | str) -> Generation:
        """Index (upsert by generation id) the output whose sidecar, or image, is given.

        A row for another id at the same image path is dropped (with its favorite):
        that file was overwritten (a forced re-render), as a rebuild would conclude.
        """
        record = read_generation(Path(sidecar_path), output_dir=self.output_dir)
        with self._session(write=True) as session:
            self._upsert(session, record, utcnow())
            superseded = session.execute(
                delete(GenerationRow).where(GenerationRow.local_path == record.local_path,
                                            GenerationRow.generation_id != record.generation_id)
                .returning(GenerationRow.generation_id)).scalars().all()
            if superseded:
                log.info("Catalog: %s replaces %s at %s", record.generation_id, ", ".join(superseded),
                         record.local_path)
        found = self.get(record.generation_id)
        assert found is not None
        return found

    def _upsert(self, session: Session, record: Generation, now: datetime) -> None:
        values: dict[str, Any] = {
            "generation_id": record.generation_id, "created_at": record.created_at, "indexed_at": now,
            "item_id": record.item_id, "recipe": record.recipe, "run_id": record.run_id,
            "recipe_hash": record.recipe_hash, "workflow": record.workflow, "prompt": record.prompt,
            "params": dict(record.params), "scores": dict(record.scores), "verdict": record.verdict,
            "attempts": record.attempts, "local_path": record.local_path, "sidecar_path": record.sidecar_path,
            "object_key": record.object_key, "object_url": record.object_url,
            "flow_run_id": record.flow_run_id, "prompt_id": record.prompt_id,
        }
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(GenerationRow).values(values)
        # The row first: on PostgreSQL it locks the id, so a concurrent upsert of the same
        # generation waits here and then replaces our categories instead of colliding with them.
        session.execute(stmt.on_conflict_do_update(
            index_elements=["generation_id"],
            set_={k: stmt.excluded[k] for k in values if k != "generation_id"}))
        session.execute(delete(CategoryRow).where(CategoryRow.generation_id == record.generation_id))
        categories = list(dict.fromkeys(record.categories))
        if categories:
            session.execute(insert(CategoryRow).values(
                [{"generation_id": record.generation_id, "category": c, "position": i}
                 for i, c in enumerate(categories)]))

    def rebuild(self, output_dir: Path | str | None = None) -> int:
        """Re-index every sidecar under ``output_dir`` (default: the catalog's); returns rows indexed.

        Rows whose sidecar is gone (or now names another id) are removed; rows for
        outputs outside the folder stay while their sidecar does. Favorites of ids that
        still exist are kept. Rows another process indexes meanwhile are never removed.
        """
        from comfy_gen.catalog.scan import iter_sidecars

        root = Path(output_dir).expanduser().resolve() if output_dir is not None else self.output_dir
        if root is None:
            raise UsageError("rebuild needs an output folder (Catalog(output_dir=...) or rebuild(output_dir))")
        started = utcnow()
        found: dict[str, Generation] = {}
        for sidecar in iter_sidecars(root):
            self._collect(found, sidecar, quiet=True)
        with self._session() as session:
            existing = dict(session.execute(select(GenerationRow.generation_id, GenerationRow.sidecar_path)).all())
        for gid, stored in existing.items():
            if gid not in found:  # outside root: keep it while its sidecar still says so
                self._collect(found, Path(stored), quiet=True, expect=gid)
        records = list(found.values())
        for start in range(0, len(records), _BATCH):
            with self._session(write=True) as session:
                now = utcnow()
                for record in records[start:start + _BATCH]:
                    self._upsert(session, record, now)
        stale = [gid for gid in existing if gid not in found]
        for start in range(0, len(stale), _BATCH):
            with self._session(write=True) as session:
                session.execute(delete(GenerationRow).where(
                    GenerationRow.generation_id.in_(stale[start:start + _BATCH]),
                    GenerationRow.indexed_at < started))
        log.info("Catalog rebuilt from %s: %d indexed, %d stale removed", root, len(records), len(stale))
        return len(records)

    def _collect(self, found: dict[str, Generation], sidecar: Path, *, quiet: bool, expect: str | None = None) -> None:
        try:
            record = read_generation(sidecar, output_dir=self.output_dir)
        except (MetadataNotFound, OSError) as exc:
            if not quiet:
                raise
            log.debug("Catalog: skipping %s (%s)", sidecar, exc)
            return
        if expect is not None and record.generation_id != expect:
            return
        if record.generation_id in found:
            log.warning("Catalog: %s and %s carry the same generation id %s; indexing the first",
                        found[record.generation_id].sidecar_path, sidecar, record.generation_id)
            return
        found[record.generation_id] = record

    # --- queries --------------------------------------------------------------------

    def get(self, generation_id: str) -> Generation | None:
        with self._session() as session:
            row = session.get(GenerationRow, normalize_id(generation_id))
            return _generation(row) if row is not None else None

    def list(self, *, recipe: str | None = None, run_id: str | None = None, verdict: str | None = None,
             category: str | None = None, favorite: bool | None = None,
             limit: int = 50, offset: int = 0) -> list[Generation]:
        """Generations, newest first, filtered by any of the given fields."""
        _check_page(limit, offset)
        query = _filtered(select(GenerationRow), recipe, run_id, verdict, category, favorite)
        query = query.order_by(GenerationRow.created_at.desc(), GenerationRow.generation_id.desc())
        with self._session() as session:
            rows = session.execute(query.limit(limit).offset(offset)).scalars().all()
            return [_generation(row) for row in rows]

    def count(self, *, recipe: str | None = None, run_id: str | None = None, verdict: str | None = None,
              category: str | None = None, favorite: bool | None = None) -> int:
        query = _filtered(select(func.count()).select_from(GenerationRow), recipe, run_id, verdict,
                          category, favorite)
        with self._session() as session:
            return int(session.execute(query).scalar_one())

    # --- favorites --------------------------------------------------------------------

    def set_favorite(self, generation_id: str, *, rating: int | None = None, feedback: str | None = None,
                     tags: Sequence[str] | None = None) -> Favorite:
        """Mark a generation as a favorite, or update one; a None field keeps its current value.

        GenerationNotFound (exit 2, HTTP 404) for an unknown id; UsageError for a bad value.
        """
        gid = check_generation_id(generation_id)
        values: dict[str, Any] = {}
        if rating is not None:
            values["rating"] = check_rating(rating)
        if feedback is not None:
            values["feedback"] = check_feedback(feedback)
        if tags is not None:
            values["tags"] = check_tags(tags)
        now = utcnow()
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(FavoriteRow).values(generation_id=gid, created_at=now, updated_at=now,
                                          **{"tags": [], **values})
        stmt = stmt.on_conflict_do_update(index_elements=["generation_id"],
                                          set_={k: stmt.excluded[k] for k in (*values, "updated_at")})
        with self._session(write=True) as session:
            if session.get(GenerationRow, gid) is None:
                raise GenerationNotFound(gid)
            try:
                session.execute(stmt)
            except sa_exc.IntegrityError as exc:  # removed between the check and the insert (foreign key)
                raise GenerationNotFound(gid) from exc
        return self._favorite(gid)

    def update_rating(self, generation_id: str, rating: int, *, feedback: str | None = None) -> Favorite:
        """Change an existing favorite's rating (and feedback); FavoriteNotFound if it is none."""
        gid = check_generation_id(generation_id)
        values: dict[str, Any] = {"rating": check_rating(rating), "updated_at": utcnow()}
        if feedback is not None:
            values["feedback"] = check_feedback(feedback)
        with self._session(write=True) as session:
            changed = session.execute(
                update(FavoriteRow).where(FavoriteRow.generation_id == gid).values(values)
                .returning(FavoriteRow.generation_id)).first()
            if changed is None:
                exists = session.get(GenerationRow, gid) is not None
                raise FavoriteNotFound(gid) if exists else GenerationNotFound(gid)
        return self._favorite(gid)

    def delete_favorite(self, generation_id: str) -> bool:
        """Unmark a favorite; False when it was not one (the generation itself stays)."""
        with self._session(write=True) as session:
            gone = session.execute(delete(FavoriteRow).where(FavoriteRow.generation_id == normalize_id(
                generation_id)).returning(FavoriteRow.generation_id)).first()
            return gone is not None

    def get_favorite(self, generation_id: str) -> Favorite | None:
        with self._session() as session:
            row = session.get(FavoriteRow, normalize_id(generation_id))
            return _favorite(row, session) if row is not None else None

    def _favorite(self, gid: str) -> Favorite:
        favorite = self.get_favorite(gid)
        if favorite is None:  # removed by another process in between
            raise FavoriteNotFound(gid)
        return favorite

    def favorites(self, *, min_rating: int | None = None, category: str | None = None,
                  limit: int = 50, offset: int = 0) -> builtins.list[Favorite]:
        """Favorites, most recently marked first."""
        _check_page(limit, offset)
        query = _favorites_query(select(FavoriteRow), min_rating, category)
        query = query.order_by(FavoriteRow.created_at.desc(), FavoriteRow.generation_id.desc())
        with self._session() as session:
            rows = session.execute(query.limit(limit).offset(offset)).scalars().all()
            return [_favorite(row, session) for row in rows]

    def count_favorites(self, *, min_rating: int | None = None, category: str | None = None) -> int:
        query = _favorites_query(select(func.count()).select_from(FavoriteRow), min_rating, category)
        with self._session() as session:
            return int(session.execute(query).scalar_one())


# --- helpers ------------------------------------------------------------------------------


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be from 1 to {MAX_LIMIT} (got {limit})")
    if offset < 0:
        raise UsageError(f"offset must be >= 0 (got {offset})")


def _has_category(category: str) -> Any:
    return select(CategoryRow.generation_id).where(CategoryRow.category == category,
                                                   CategoryRow.generation_id == GenerationRow.generation_id).exists()


def _filtered(query: Select[Any], recipe: str | None, run_id: str | None, verdict: str | None,
              category: str | None, favorite: bool | None) -> Select[Any]:
    for column, value in ((GenerationRow.recipe, recipe), (GenerationRow.run_id, run_id),
                          (GenerationRow.verdict, verdict)):
        if value is not None:
            query = query.where(column == value)
    if category is not None:
        query = query.where(_has_category(category))
    if favorite is not None:
        marked = select(FavoriteRow.generation_id).where(
            FavoriteRow.generation_id == GenerationRow.generation_id).exists()
        query = query.where(marked if favorite else ~marked)
    return query


def _favorites_query(query: Select[Any], min_rating: int | None, category: str | None) -> Select[Any]:
    if min_rating is not None:
        query = query.where(FavoriteRow.rating >= check_rating(min_rating))
    if category is not None:
        query = query.join(GenerationRow, GenerationRow.generation_id == FavoriteRow.generation_id)
        query = query.where(_has_category(category))
    return query


def _generation(row: GenerationRow) -> Generation:
    fav = row.favorite
    return Generation(
        generation_id=row.generation_id, created_at=row.created_at, local_path=row.local_path,
        sidecar_path=row.sidecar_path, item_id=row.item_id, recipe=row.recipe, run_id=row.run_id,
        recipe_hash=row.recipe_hash, workflow=row.workflow, prompt=row.prompt, params=dict(row.params or {}),
        categories=tuple(c.category for c in row.categories), scores=dict(row.scores or {}),
        verdict=row.verdict, attempts=row.attempts, object_key=row.object_key, object_url=row.object_url,
        flow_run_id=row.flow_run_id, prompt_id=row.prompt_id, favorite=fav is not None,
        rating=fav.rating if fav else None, feedback=fav.feedback if fav else None,
        tags=tuple(fav.tags or ()) if fav else (),
    )


def _favorite(row: FavoriteRow, session: Session) -> Favorite:
    generation = session.get(GenerationRow, row.generation_id)
    assert generation is not None  # the foreign key guarantees it
    return Favorite(generation=_generation(generation), rating=row.rating, feedback=row.feedback,
                    tags=tuple(row.tags or ()), created_at=row.created_at, updated_at=row.updated_at)


def default_catalog_url(settings: "Settings") -> str:
    """The URL ``from_settings`` opens (with its password: never print it)."""
    return settings.secret("database_url") or sqlite_url(settings.catalog_file())

