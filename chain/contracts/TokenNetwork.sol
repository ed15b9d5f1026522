// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {SecretRegistry} from "./SecretRegistry.sol";

/// @notice The part of ERC-20 a TokenNetwork uses.
interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title TokenNetwork
/// @notice The adjudicator of Hoplite channels in one ERC-20 token.
/// @dev This version holds the verification core that every channel operation rests on: the
/// EIP-712 balance-proof digest, signer recovery and the locks tree. Each matches the Rust crate
/// hoplite-htlc byte for byte (its crate docs specify the bytes; htlc/test-vectors pins them).
/// The channel lifecycle (open, deposit, withdraw, close, update, settle, unlock) is built on it.
contract TokenNetwork {
    /// @notice A hash-time-lock, as committed to by a locks root.
    struct Lock {
        uint256 amount;
        uint64 expiration;
        bytes32 secretHash;
    }

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Hoplite");
    bytes32 private constant VERSION_HASH = keccak256("1");
    bytes32 private constant BALANCE_PROOF_TYPEHASH = keccak256(
        "BalanceProof(uint256 channelId,uint64 nonce,uint256 transferredAmount,uint256 lockedAmount,bytes32 locksRoot)"
    );
    /// @dev Half the secp256k1 order: a larger `s` is a malleated signature.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    IERC20 public immutable token;
    SecretRegistry public immutable secretRegistry;

    uint256 private immutable cachedChainId;
    address private immutable cachedThis;
    bytes32 private immutable cachedDomainSeparator;

    error SignatureLength(uint256 length);
    error SignatureRecoveryByte(uint8 v);
    error SignatureHighS();
    error SignatureUnrecoverable();
    error LockIndexOutOfRange(uint256 index, uint256 depth);

    constructor(IERC20 token_, SecretRegistry secretRegistry_) {
        token = token_;
        secretRegistry = secretRegistry_;
        cachedChainId = block.chainid;
        cachedThis = address(this);
        cachedDomainSeparator = buildDomainSeparator();
    }

    /// @notice The EIP-712 domain separator: name "Hoplite", version "1", this chain, this contract.
    function domainSeparator() public view returns (bytes32) {
        // Recomputed if the chain id changed (a fork) or the code runs at another address.
        if (block.chainid == cachedChainId && address(this) == cachedThis) {
            return cachedDomainSeparator;
        }
        return buildDomainSeparator();
    }

    /// @notice The digest a balance proof's sender signs.
    function balanceProofDigest(
        uint256 channelId,
        uint64 nonce,
        uint256 transferredAmount,
        uint256 lockedAmount,
        bytes32 locksRoot
    ) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(BALANCE_PROOF_TYPEHASH, channelId, nonce, transferredAmount, lockedAmount, locksRoot)
        );
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    /// @notice The address that signed `digest`: 65 bytes r ‖ s ‖ v, v ∈ {27, 28}, low s.
    function recoverSigner(bytes32 digest, bytes calldata signature) public pure returns (address signer) {
        if (signature.length != 65) {
            revert SignatureLength(signature.length);
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 32))
            v := byte(0, calldataload(add(signature.offset, 64)))
        }
        if (v != 27 && v != 28) {
            revert SignatureRecoveryByte(v);
        }
        if (uint256(s) > HALF_ORDER) {
            revert SignatureHighS();
        }
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) {
            revert SignatureUnrecoverable();
        }
    }

    /// @notice A lock's leaf: keccak256(abi.encode(amount, expiration, secretHash)), 96 bytes.
    function lockLeaf(Lock calldata lock) public pure returns (bytes32) {
        return keccak256(abi.encode(lock.amount, lock.expiration, lock.secretHash));
    }

    /// @notice The root that a membership proof leads to from `leaf` in slot `index`. Bit k of
    /// `index` says whether the path node at height k is a right child; `siblings` go leaf first.
    function rootFromProof(bytes32 leaf, uint256 index, bytes32[] calldata siblings)
        public
        pure
        returns (bytes32 node)
    {
        uint256 depth = siblings.length;
        if (depth < 256 && index >> depth != 0) {
            revert LockIndexOutOfRange(index, depth);
        }
        node = leaf;
        for (uint256 k = 0; k < depth; k++) {
            node = ((index >> k) & 1) == 0 ? hashPair(node, siblings[k]) : hashPair(siblings[k], node);
        }
    }

    /// @notice The locks root of `locks` in slot order: pairs hashed level by level, a missing
    /// right child read as zero; zero for no locks.
    function computeLocksRoot(Lock[] calldata locks) public pure returns (bytes32) {
        uint256 n = locks.length;
        if (n == 0) {
            return bytes32(0);
        }
        bytes32[] memory level = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            level[i] = lockLeaf(locks[i]);
        }
        while (n > 1) {
            uint256 parents = (n + 1) / 2;
            for (uint256 j = 0; j < parents; j++) {
                bytes32 right = 2 * j + 1 < n ? level[2 * j + 1] : bytes32(0);
                level[j] = hashPair(level[2 * j], right);
            }
            n = parents;
        }
        return level[0];
    }

    function buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev keccak256(left ‖ right) in scratch space.
    function hashPair(bytes32 left, bytes32 right) private pure returns (bytes32 hash) {
        assembly {
            mstore(0x00, left)
            mstore(0x20, right)
            hash := keccak256(0x00, 0x40)
        }
    }
}
