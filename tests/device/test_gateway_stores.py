"""The gateway's store and the gateway receiver's state open through the one SQLite bootstrap
(lightpost.adapters.sqlite): private files, a kind of their own, one error line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lightpost.errors import StoreError
from lightpost_gateway.follow_store import ReceiverStore
from lightpost_gateway.service import GatewayStore


@pytest.mark.parametrize("store", [GatewayStore, ReceiverStore])
def test_a_store_file_is_private_and_of_its_own_kind(store: type, tmp_path: Path) -> None:
    opened = store(tmp_path / "state.sqlite")
    opened.close()
    assert (tmp_path / "state.sqlite").stat().st_mode & 0o777 == 0o600
    store(tmp_path / "state.sqlite").close()  # reopened: the same kind and version
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE unrelated (x)")
    with pytest.raises(StoreError, match="is not a lightpost"):
        store(other)


def test_the_gateway_store_and_the_receiver_state_are_not_each_other(tmp_path: Path) -> None:
    GatewayStore(tmp_path / "gw.sqlite").close()
    with pytest.raises(StoreError, match="is not a lightpost"):
        ReceiverStore(tmp_path / "gw.sqlite")
