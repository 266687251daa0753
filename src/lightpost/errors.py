"""One exception root (:class:`LightpostError`) with families and typed attributes. Messages never
contain secrets (keys, passwords, RPC URLs; endpoints by label). As in h11: the *peer*'s faults
derive from :class:`RemoteError`, the *caller*'s from :class:`LocalError`."""

from __future__ import annotations

__all__ = [
    "AlreadyKnown",
    "AnswerTooLarge",
    "BeaconRefused",
    "ChainProcessError",
    "ConfigError",
    "DecodingError",
    "EndpointUnavailable",
    "InsufficientFunds",
    "IntrinsicGasTooLow",
    "KeystoreError",
    "LightpostError",
    "LocalError",
    "MethodNotSupported",
    "NodeError",
    "NonceTooLow",
    "Oversized",
    "PolicyError",
    "ProofError",
    "QuorumError",
    "RLPDecodingError",
    "RateLimited",
    "RemoteError",
    "ReplacementUnderpriced",
    "SignatureError",
    "StoreError",
    "TransportError",
]


class LightpostError(Exception):
    """Root of every error lightpost raises."""


class LocalError(LightpostError):
    """The caller asked for something illegal (bad input, config, policy)."""


class RemoteError(LightpostError):
    """Something outside (bytes from a node, a proof, an endpoint) is wrong."""


# --- decoding ---


class DecodingError(RemoteError):
    """Bytes that do not decode: ``what`` names the structure (``"rlp"``, ``"envelope"``...),
    ``offset`` the byte offset when known."""

    def __init__(self, what: str, reason: str, offset: int | None = None) -> None:
        self.what = what
        self.reason = reason
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"invalid {what}{where}: {reason}")


class RLPDecodingError(DecodingError):
    """Non-canonical or malformed RLP."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        super().__init__("rlp", reason, offset)


# --- signatures, proofs ---


class SignatureError(RemoteError):
    """A signature that is malformed, non-canonical (high s) or does not recover."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid signature: {reason}")


class ProofError(RemoteError):
    """A proof, root or header hash that does not verify; ``kind``: the check (``"account"``,
    ``"storage"``, ``"transactionsRoot"``, ``"header"``...)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"invalid {kind} proof: {reason}")


class NotProvable(ProofError):
    """An answer lightpost has no way to check (a transaction or receipt type it cannot encode,
    with no raw form to prove it): refused with the reason, but no endpoint is blamed for it --
    an honest one serves the same."""


class BeaconRefused(RemoteError):
    """Beacon light-client data refused by the sync protocol; ``rule``: the named check that
    failed (``"signature"``, ``"participants"``, ``"finality_branch"``, ``"future_slot"``...)."""

    def __init__(self, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(f"beacon data refused ({rule}): {reason}")


class QuorumError(RemoteError):
    """Endpoints did not agree on a value that matters: ``question`` asked, ``answers`` endpoint
    *label* (never URL) -> rendering, ``needed`` = k."""

    def __init__(self, question: str, answers: dict[str, str], needed: int) -> None:
        self.question = question
        self.answers = dict(answers)
        self.needed = needed
        rendered = ", ".join(f"{k}={v}" for k, v in sorted(self.answers.items()))
        super().__init__(
            f"no quorum on {question}: need {needed} agreeing endpoints, got {rendered or 'none'}"
        )


# --- local refusals ---


class PolicyError(LocalError):
    """A refusal by policy (fee cap, capacity, authorization, level); ``rule``: its short
    machine-readable name."""

    def __init__(self, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(f"refused ({rule}): {reason}")


class KeystoreError(LocalError):
    """A keystore file that cannot be read, or a wrong password (MAC mismatch)."""


class ConfigError(LocalError):
    """A configuration file or value that is missing or invalid."""


class StoreError(LocalError):
    """The local durable store cannot be opened or is inconsistent."""


class ChainProcessError(LocalError):
    """The local chain process (anvil) is missing, cannot start, or is not running."""


# --- transport / node errors ---


class TransportError(RemoteError):
    """A JSON-RPC call failed. ``endpoint`` is a label such as ``"rpc#1"``, never a URL."""

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"{endpoint}: {reason}")


class EndpointUnavailable(TransportError):
    """Connection refused, timeout, HTTP failure: the endpoint did not answer usefully."""


class AnswerTooLarge(EndpointUnavailable):
    """An answer above its method's size cap (``cap`` bytes); for eth_getLogs, a smaller range may
    fit."""

    def __init__(self, endpoint: str, cap: int) -> None:
        self.cap = cap
        super().__init__(endpoint, f"answer larger than {cap} bytes")


class NodeError(TransportError):
    """The node answered with a JSON-RPC error. ``code`` is the JSON-RPC error code."""

    def __init__(self, endpoint: str, reason: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(endpoint, reason)


class NonceTooLow(NodeError):
    """The node has already seen a transaction with this nonce from this sender."""


class AlreadyKnown(NodeError):
    """The node already holds this exact transaction (success for an identical raw tx)."""


class ReplacementUnderpriced(NodeError):
    """A replacement did not raise both fee cap and tip enough (geth: >= 10%)."""


class InsufficientFunds(NodeError):
    """The sender cannot pay gas limit x fee cap + value."""


class IntrinsicGasTooLow(NodeError):
    """The gas limit is below the intrinsic gas / EIP-7623 floor of the transaction."""


class Oversized(NodeError):
    """The transaction exceeds the txpool size limit or the per-transaction gas cap."""


class RateLimited(NodeError):
    """The endpoint asked us to slow down (HTTP 429 or a rate-limit error)."""


class MethodNotSupported(NodeError):
    """The endpoint does not implement the JSON-RPC method."""
