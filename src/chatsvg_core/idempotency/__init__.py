"""Idempotent submits: client keys, canonical request fingerprints, replay and conflict.

A host takes the client's ``Idempotency-Key``, checks it
(:func:`validate_idempotency_key`), scopes it to the caller
(:func:`idempotency_scope`), fingerprints the request (:func:`request_hash`,
RFC 8785 JCS + SHA-256) and calls :func:`create_or_replay` inside a store
transaction: the first submit creates the job, a retry of the same request
gets it back (:class:`Replayed`), another request under the same key is
refused (:class:`~chatsvg_core.errors.IdempotencyConflict`). See
``docs/idempotency.md``.
"""

from __future__ import annotations

from chatsvg_core.idempotency._canonical import (
    HASH_VERSION,
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    canonical_json,
    request_hash,
)
from chatsvg_core.idempotency._keys import (
    MAX_KEY_LENGTH,
    MAX_OPERATION_LENGTH,
    MAX_OWNER_LENGTH,
    KeyRule,
    idempotency_scope,
    parse_scope,
    validate_idempotency_key,
)
from chatsvg_core.idempotency._semantics import (
    DEFAULT_TTL,
    Created,
    Replayed,
    create_or_replay,
    decide,
    prune_expired,
)

__all__ = [
    "DEFAULT_TTL",
    "HASH_VERSION",
    "MAX_DEPTH",
    "MAX_KEY_LENGTH",
    "MAX_OPERATION_LENGTH",
    "MAX_OWNER_LENGTH",
    "MAX_SAFE_INTEGER",
    "Created",
    "KeyRule",
    "Replayed",
    "canonical_json",
    "create_or_replay",
    "decide",
    "idempotency_scope",
    "parse_scope",
    "prune_expired",
    "request_hash",
    "validate_idempotency_key",
]
