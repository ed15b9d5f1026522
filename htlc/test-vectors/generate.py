#!/usr/bin/env python3
"""Writes balance-proofs.json: known-answer vectors for Hoplite's signed state.

Independent of the Rust code on purpose: EIP-712 hashing and signing come from eth-account, the
locks tree is written here from the specification in the htlc crate docs ("Locks root"). The Rust
tests (htlc/tests/vectors.rs) and the contract tests check they compute the same bytes.

    pip install eth-account==0.14.0 && python3 htlc/test-vectors/generate.py
"""

import hashlib
import json
import pathlib

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

U256_MAX = 2**256 - 1
ZERO = b"\x00" * 32

BALANCE_PROOF_TYPE = [
    {"name": "channelId", "type": "uint256"},
    {"name": "nonce", "type": "uint64"},
    {"name": "transferredAmount", "type": "uint256"},
    {"name": "lockedAmount", "type": "uint256"},
    {"name": "locksRoot", "type": "bytes32"},
]


def hexstr(b: bytes) -> str:
    return "0x" + b.hex()


def secret(n: int) -> bytes:
    return keccak(b"hoplite-secret-" + str(n).encode())


def leaf(amount: int, expiration: int, secret_hash: bytes) -> bytes:
    # keccak256(abi.encode(uint256 amount, uint64 expiration, bytes32 secretHash))
    return keccak(amount.to_bytes(32, "big") + expiration.to_bytes(32, "big") + secret_hash)


def node(left: bytes, right: bytes) -> bytes:
    return keccak(left + right)


def tree_levels(leaves):
    """All levels, leaves first; a missing right child counts as 32 zero bytes."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node(below[i], below[i + 1] if i + 1 < len(below) else ZERO)
                       for i in range(0, len(below), 2)])
    return levels


def lock_set(name, ops):
    """Applies ('add', amount, expiration, n) and ('remove', n) in order; a removal moves the
    last lock into the freed slot."""
    locks = []
    operations = []
    for op in ops:
        if op[0] == "add":
            _, amount, expiration, n = op
            s = secret(n)
            lock = {"amount": amount, "expiration": expiration, "secret": s,
                    "secret_hash": hashlib.sha256(s).digest()}
            locks.append(lock)
            operations.append({"op": "add", "amount": str(amount), "expiration": expiration,
                               "secret_hash": hexstr(lock["secret_hash"])})
        else:
            target = hashlib.sha256(secret(op[1])).digest()
            slot = next(i for i, l in enumerate(locks) if l["secret_hash"] == target)
            locks[slot] = locks[-1]
            locks.pop()
            operations.append({"op": "remove", "secret_hash": hexstr(target)})
    leaves = [leaf(l["amount"], l["expiration"], l["secret_hash"]) for l in locks]
    levels = tree_levels(leaves) if leaves else []
    root = levels[-1][0] if leaves else ZERO
    proofs = []
    for i in range(len(leaves)):
        siblings = []
        for k in range(len(levels) - 1):
            j = (i >> k) ^ 1
            siblings.append(hexstr(levels[k][j] if j < len(levels[k]) else ZERO))
        proofs.append({"index": i, "siblings": siblings})
    return {
        "name": name,
        "operations": operations,
        "locks": [{"amount": str(l["amount"]), "expiration": l["expiration"],
                   "secret": hexstr(l["secret"]), "secret_hash": hexstr(l["secret_hash"])}
                  for l in locks],
        "leaf_hashes": [hexstr(h) for h in leaves],
        "locked_amount": str(sum(l["amount"] for l in locks)),
        "locks_root": hexstr(root),
        "proofs": proofs,
    }


def balance_proof(key_seed, chain_id, token_network, channel_id, nonce, transferred, locked, root):
    private_key = keccak(b"hoplite-key-" + str(key_seed).encode())
    message = {
        "channelId": channel_id,
        "nonce": nonce,
        "transferredAmount": transferred,
        "lockedAmount": locked,
        "locksRoot": root,
    }
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "BalanceProof": BALANCE_PROOF_TYPE,
        },
        "primaryType": "BalanceProof",
        "domain": {"name": "Hoplite", "version": "1", "chainId": chain_id,
                   "verifyingContract": token_network},
        "message": message,
    }
    signable = encode_typed_data(full_message=typed)
    signed = Account.sign_message(signable, private_key)
    digest = keccak(b"\x19\x01" + signable.header + signable.body)
    assert digest == bytes(signed.message_hash)
    return {
        "private_key": hexstr(private_key),
        "signer": Account.from_key(private_key).address,
        "chain_id": chain_id,
        "token_network": token_network,
        "channel_id": str(channel_id),
        "nonce": nonce,
        "transferred_amount": str(transferred),
        "locked_amount": str(locked),
        "locks_root": hexstr(root),
        "domain_separator": hexstr(signable.header),
        "struct_hash": hexstr(signable.body),
        "digest": hexstr(digest),
        "signature": hexstr(bytes(signed.signature)),
    }


def main():
    sets = [
        lock_set("empty", []),
        lock_set("one", [("add", 10, 1200, 1)]),
        lock_set("two", [("add", 10, 1200, 1), ("add", 20, 1300, 2)]),
        lock_set("three", [("add", 10, 1200, 1), ("add", 20, 1300, 2), ("add", 30, 1400, 3)]),
        lock_set("five-then-remove-second",
                 [("add", 10 * n, 1000 + n, n) for n in range(1, 6)] + [("remove", 2)]),
        lock_set("nine-large", [("add", U256_MAX // 16 - n, 2**63 + n, 100 + n) for n in range(9)]),
        lock_set("two-removed-to-one", [("add", 5, 900, 7), ("add", 6, 901, 8), ("remove", 7)]),
    ]
    nine = sets[5]
    tn = "0x00000000000000000000000000000000000070cE"
    proofs = [
        balance_proof(1, 1337, tn, 1, 1, 0, 0, ZERO),
        balance_proof(2, 1, "0x5FbDB2315678afecb367f032d93F642f64180aa3", 7, 42, 10**18, 60,
                      bytes.fromhex(sets[3]["locks_root"][2:])),
        balance_proof(3, 2**64 - 1, tn, 2**256 - 1, 2**64 - 1, U256_MAX, U256_MAX,
                      bytes.fromhex("ff" * 32)),
        balance_proof(4, 11155111, tn, 123456789, 1000, 123, int(nine["locked_amount"]),
                      bytes.fromhex(nine["locks_root"][2:])),
    ]
    out = {
        "description": "Hoplite known-answer vectors: EIP-712 balance proofs and locks roots. "
                       "Generated by generate.py with eth-account, independently of the Rust code. "
                       "Amounts and ids are decimal strings (uint256).",
        "domain": {"name": "Hoplite", "version": "1"},
        "eip712_type": "BalanceProof(" + ",".join(
            f"{f['type']} {f['name']}" for f in BALANCE_PROOF_TYPE) + ")",
        "lock_sets": sets,
        "balance_proofs": proofs,
    }
    path = pathlib.Path(__file__).with_name("balance-proofs.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
