"""Where a state is, as people spell it: passwords masked, odd names found, one state one name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.state import Location, location, mask_url, same
from runner.state.copy import copy
from runner.status import Status
from tests.helpers import open_run


def test_every_password_of_a_state_url_is_masked() -> None:
    url = "postgresql://u:UserPw_S3cr3t@db:5432/x?sslmode=require&password=QueryPw_S3cr3t"
    shown = mask_url(url)
    assert shown == "postgresql://u:***@db:5432/x?sslmode=require&password=***"
    assert Location(url=url).passwords == ["UserPw_S3cr3t", "QueryPw_S3cr3t"]


def test_a_password_a_parser_would_cut_is_refused_without_showing_it() -> None:
    with pytest.raises(UsageError) as caught:
        location("postgresql://u:ab#cd/ef@db/x")
    assert "ab#cd" not in str(caught.value)
    assert "cd/ef" not in str(caught.value)
    assert str(caught.value).startswith("postgresql://u:***@db/x: the user or password")


def test_one_state_however_it_is_spelled(tmp_path: Path) -> None:
    assert same(
        Location(url="postgresql://u@127.0.0.1/x"), Location(url="postgresql://u@localhost:5432/x")
    )
    assert same(Location(path=tmp_path / "a" / ".." / "s.db"), Location(path=tmp_path / "s.db"))
    assert not same(Location(url="postgresql://u@db/x"), Location(url="postgresql://u@db/y"))


def test_a_state_with_brackets_in_its_name_is_copied_with_its_journal(tmp_path: Path) -> None:
    source = Location(path=tmp_path / "state[prod].sqlite3")

    async def crash() -> None:
        run = await open_run(source, "c", "r1")
        await run.claim("u1", 1)
        run.record("u1", Status.SENT, 1, 200, None, None)
        await run.claim("u2", 2)
        await asyncio.sleep(0)
        run.abandon()  # killed: the journal holds it all

    asyncio.run(crash())
    target = Location(path=tmp_path / "copy.sqlite3")
    assert asyncio.run(copy(source, target)) == ({"c": 2}, [])
    with pytest.raises(Exception, match="same state"):
        asyncio.run(copy(target, Location(path=tmp_path / "x" / ".." / "copy.sqlite3")))


def test_a_state_of_another_shape_or_an_unknown_status_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from runner.errors import StateError
    from runner.state.core import read_status

    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE recipients (id INTEGER, name TEXT)")
    with pytest.raises(StateError, match="this is not a campaign-runner state"):
        asyncio.run(read_status(Location(path=foreign), "c"))
    with pytest.raises(StateError, match="this is not a campaign-runner state"):
        asyncio.run(copy(Location(path=foreign), Location(path=tmp_path / "out.sqlite3")))

    odd = Location(path=tmp_path / "odd.sqlite3")

    async def write() -> None:
        run = await open_run(odd, "c", "r1")
        await run.claim("u1", 1)
        run.record("u1", Status.SENT, 1, 200, None, None)
        await run.close()

    asyncio.run(write())
    with sqlite3.connect(odd.path) as db:  # type: ignore[arg-type]
        db.execute("UPDATE recipients SET status = 'delivered-ish'")
    with pytest.raises(StateError, match="unknown status 'delivered-ish'"):
        asyncio.run(copy(odd, Location(path=tmp_path / "out2.sqlite3")))


def test_a_multi_host_url_is_accepted_and_masked() -> None:
    url = "postgresql://u:Multi_Pw_9@db1:5432,db2:5433/x?target_session_attrs=read-write"
    assert mask_url(url) == "postgresql://u:***@db1:5432,db2:5433/x?target_session_attrs=read-write"
    assert Location(url=url).passwords == ["Multi_Pw_9"]


def test_copying_a_state_that_holds_nothing_says_so(tmp_path: Path) -> None:
    import sqlite3

    from runner.errors import StateError

    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    with pytest.raises(StateError, match="this state holds no campaign; nothing was copied"):
        asyncio.run(copy(Location(path=empty), Location(path=tmp_path / "to.sqlite3")))


def test_a_folder_is_copied_all_or_nothing_passing_over_empty_files(tmp_path: Path) -> None:
    import sqlite3

    from runner.errors import StateError
    from runner.state.core import read_status

    folder = tmp_path / ".campaign-state"

    async def write(name: str, where: Location) -> None:
        run = await open_run(where, name, "r1")
        await run.claim("u1", 1)
        run.record("u1", Status.SENT, 1, 200, None, None)
        await run.close()

    for name in ("a", "b"):
        asyncio.run(write(name, Location(path=folder / f"{name}.sqlite3")))
    sqlite3.connect(folder / "stray.sqlite3").close()  # left by a resume of a typo, say
    taken = Location(path=tmp_path / "taken.sqlite3")
    asyncio.run(write("b", taken))
    with pytest.raises(StateError, match="already holds campaign b; nothing was copied"):
        asyncio.run(copy(Location(path=folder), taken))
    with pytest.raises(StateError, match="no state yet for campaign a"):
        asyncio.run(read_status(taken, "a"))  # nothing of the folder went in
    copied, notes = asyncio.run(copy(Location(path=folder), Location(path=tmp_path / "new.db")))
    assert copied == {"a": 1, "b": 1}
    assert notes == [f"{folder / 'stray.sqlite3'}: this state holds no campaign: passed over"]


def test_libpqs_own_passwords_are_masked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text("# comment\ndb:5432:*:app:Pass_File_7\\:x\n")
    service = tmp_path / "services"
    service.write_text("[prod]\nhost=db\npassword = Service_Pw_8\n")
    monkeypatch.setenv("PGPASSWORD", "Env_Pw_123")
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    found = Location(url="postgresql://app@db/x?service=prod").passwords
    assert found == ["Env_Pw_123", "Pass_File_7:x", "Service_Pw_8"]
    assert Location(path=tmp_path / "s.sqlite3").passwords == []


def test_a_folder_is_a_source_only(tmp_path: Path) -> None:
    from runner.errors import StateError

    with pytest.raises(StateError, match="a folder is a source only; name a state file"):
        asyncio.run(copy(Location(path=tmp_path / "a.sqlite3"), Location(path=tmp_path)))
