"""Tokens stored under the ids an earlier version derived for the file's credentials (UUIDs),
moved to today's ids (ULIDs, `config/ids.py`) once at start: a rotated refresh token or an
exchanged `oauth2-code`/`oauth1` credential stays attached across the upgrade."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..config import models as m
from ..config.ids import legacy_token_ids
from . import StaleToken, Store

log = logging.getLogger("signing_proxy.store")


async def carry_legacy_tokens(store: Store, connections: Iterable[m.Connection]) -> None:
    for connection in connections:
        for new, old in legacy_token_ids(connection).items():
            record = await store.get_token(old)
            if record is None or await store.get_token(new) is not None:
                continue
            try:
                await store.put_token(new, record, expected_version=0)
            except StaleToken:
                pass  # another process carried it over first
            await store.delete_token(old)
            log.info("credential %s: stored token carried over from its earlier id", new)
