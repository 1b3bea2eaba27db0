"""SQLite writers take turns across processes; PostgreSQL writers hold nothing."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from sqlalchemy import create_engine

from tasks.db.write_lock import LOCK_SUFFIX, writer_turn

# Longest a step of the other process may take to show up before the test gives up.
STEP_TIMEOUT_S = 20.0


def _hold_then_release(database: str, journal: str, release_file: str) -> None:
    """In another process: take the writer's turn, note it, hold it until told to let go."""
    engine = create_engine(f"sqlite:///{database}")
    with writer_turn(engine):
        Path(journal).write_text("child holds\n")
        while not Path(release_file).exists():
            time.sleep(0.01)
        with Path(journal).open("a") as out:
            out.write("child releases\n")


def _wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_writer_waits_for_another_process_to_finish_its_turn(tmp_path: Path) -> None:
    database, journal, release = tmp_path / "hwq.db", tmp_path / "journal", tmp_path / "go"
    child = multiprocessing.get_context("spawn").Process(
        target=_hold_then_release, args=(str(database), str(journal), str(release))
    )
    child.start()
    try:
        _wait_for(journal.exists, "the other process to take its turn")
        engine = create_engine(f"sqlite:///{database}")
        # Let the child go only once this process is already queued behind it.
        release_later = multiprocessing.get_context("spawn").Process(
            target=_touch_after, args=(str(release), 0.3)
        )
        release_later.start()
        with writer_turn(engine), journal.open("a") as out:
            out.write("parent writes\n")
        release_later.join(STEP_TIMEOUT_S)
    finally:
        release.touch()
        child.join(STEP_TIMEOUT_S)
    assert journal.read_text().splitlines() == ["child holds", "child releases", "parent writes"]
    assert (tmp_path / f"hwq.db{LOCK_SUFFIX}").exists()


def _touch_after(path: str, seconds: float) -> None:
    time.sleep(seconds)
    Path(path).touch()


def test_threads_of_one_process_share_the_lock_and_take_turns(tmp_path: Path) -> None:
    import threading

    engine = create_engine(f"sqlite:///{tmp_path / 'hwq.db'}")
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def write() -> None:
        nonlocal inside, most_inside
        for _ in range(50):
            with writer_turn(engine):
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1


def test_postgresql_and_in_memory_sqlite_need_no_lock_file(tmp_path: Path) -> None:
    postgres = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with writer_turn(postgres):
        pass
    with writer_turn(create_engine("sqlite://")):
        pass
    assert not list(tmp_path.iterdir())
