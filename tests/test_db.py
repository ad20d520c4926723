from wagate.db import Database, head_revision


async def test_upgrade_reaches_head(database: Database) -> None:
    assert await database.current_revision() == head_revision()
