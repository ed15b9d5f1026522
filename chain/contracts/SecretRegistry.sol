// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// @title SecretRegistry
/// @notice Records the block at which a lock's secret was first revealed on-chain, for every
/// TokenNetwork. A lock pays its receiver if its secret was registered at or before the lock's
/// expiration; registering is how a mediator keeps its claim when its partner won't unlock.
contract SecretRegistry {
    /// @dev sha256(secret) => block of the first registration; 0 = never registered.
    mapping(bytes32 => uint256) private revealBlock;

    /// @notice A secret was registered for the first time.
    event SecretRevealed(bytes32 indexed secretHash, bytes32 secret);

    /// @notice Registers `secret`; returns false (and records nothing) if it already was.
    function registerSecret(bytes32 secret) public returns (bool) {
        bytes32 secretHash = sha256(abi.encodePacked(secret));
        if (revealBlock[secretHash] != 0) {
            return false;
        }
        revealBlock[secretHash] = block.number;
        emit SecretRevealed(secretHash, secret);
        return true;
    }

    /// @notice Registers every secret; returns true only if all of them were new.
    function registerSecretBatch(bytes32[] calldata secrets) external returns (bool allNew) {
        allNew = true;
        for (uint256 i = 0; i < secrets.length; i++) {
            if (!registerSecret(secrets[i])) {
                allNew = false;
            }
        }
    }

    /// @notice The block at which the secret with this sha256 was registered; 0 if never.
    function getSecretRevealBlockHeight(bytes32 secretHash) external view returns (uint256) {
        return revealBlock[secretHash];
    }
}
