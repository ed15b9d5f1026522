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
/// @dev Lifecycle: openChannel → setTotalDeposit (each side) → [setTotalWithdraw] → either
/// cooperativeSettle, or closeChannel → updateNonClosingBalanceProof (within the window) →
/// settleChannel (after it) → unlock / unlockBatch of the pending locks.
///
/// Storage holds one word per channel: the keccak256 of its ABI-encoded `Channel`. Callers pass
/// the current `Channel` in calldata (the events carry everything needed to rebuild it), the
/// contract checks it against the stored hash, and stores the hash of the new state. Calldata
/// is far cheaper than fresh storage slots, which dominated the gas of a storage-per-field
/// design (open 114k, deposit 88k). After settleChannel the same word commits to what is left
/// for unlock (`Settled`: both directions' lock pots), or is cleared if nothing is; a
/// cooperatively settled channel keeps a tombstone. Channel ids contain the opening block, so
/// an id is never reused and no signature for an old channel can be replayed on a new one.
///
/// The EIP-712 digest, signer recovery and locks tree match the Rust crate hoplite-htlc byte for
/// byte (its crate docs specify the bytes; htlc/test-vectors pins them).
/// Settlement never reverts on signed inputs, however odd: payouts are clamped to what the
/// channel holds, and payouts plus pending-lock pots always equal it.
contract TokenNetwork {
    /// @notice One participant's side of a channel.
    struct Side {
        uint256 deposit;
        uint256 withdrawn;
        /// @dev Nonce of the latest proof this participant signed that was submitted on-chain.
        uint64 nonce;
        /// @dev keccak256(abi.encode(BalanceData)) of that proof; zero if none.
        bytes32 balanceHash;
    }

    /// @notice A channel's whole state; only its hash is stored.
    struct Channel {
        address participant1;
        address participant2;
        uint32 settleTimeout;
        /// @dev Zero while open; once closed, the last block of the challenge window.
        uint64 settleBlock;
        /// @dev Zero while open.
        address closer;
        Side side1;
        Side side2;
    }

    /// @notice What a participant signed for its own outgoing direction, as submitted at close.
    struct BalanceData {
        uint256 transferredAmount;
        uint256 lockedAmount;
        bytes32 locksRoot;
    }

    /// @notice Locked tokens of one direction left after settlement, paid out lock by lock.
    /// @dev `shortfall`: how much less the pot held at settlement than its locks add up to (the
    /// receiver's share could not cover them all: an old proof was submitted and the receiver
    /// spent since). Claims bear it before anything is paid to the receiver, so every lock that
    /// returns to its sender returns whole, in whatever order the locks are unlocked.
    struct LockPot {
        bytes32 locksRoot;
        uint256 remaining;
        uint256 shortfall;
    }

    /// @notice What a settled channel still holds: each participant's pending locks towards the
    /// other (`pot1`: participant1's). Only its hash is stored, in the channel's word.
    struct Settled {
        address participant1;
        LockPot pot1;
        address participant2;
        LockPot pot2;
    }

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

    bytes32 private constant COOPERATIVE_SETTLE_TYPEHASH = keccak256(
        "CooperativeSettle(uint256 channelId,address participant1,uint256 balance1,address participant2,uint256 balance2)"
    );
    bytes32 private constant WITHDRAW_TYPEHASH =
        keccak256("Withdraw(uint256 channelId,address participant,uint256 totalWithdraw,uint256 expiry)");
    bytes32 private constant BALANCE_PROOF_UPDATE_TYPEHASH =
        keccak256("BalanceProofUpdate(uint256 channelId,bytes32 balanceProof)");

    /// @notice The word of a cooperatively settled channel: never the hash of a state. (Such a
    /// channel may be settled in its opening block, so clearing the word could let the same id
    /// be opened again in that block.)
    bytes32 public constant SETTLED = bytes32(uint256(1));

    /// @notice Bounds of a channel's challenge window, in blocks.
    uint32 public constant MIN_SETTLE_TIMEOUT = 10;
    uint32 public constant MAX_SETTLE_TIMEOUT = 2_000_000;

    IERC20 public immutable token;
    SecretRegistry public immutable secretRegistry;

    uint256 private immutable cachedChainId;
    address private immutable cachedThis;
    bytes32 private immutable cachedDomainSeparator;

    /// @notice channelId => keccak256(abi.encode(Channel)) while open or closed; after
    /// settleChannel keccak256(abi.encode(Settled)) while locks are pending, then zero; SETTLED
    /// after cooperativeSettle; zero if never opened.
    mapping(uint256 => bytes32) public channelHash;
    /// @dev keccak256(channelId, sender) => slots of sender's pot already paid by `unlock`: bit i
    /// of word i / 256.
    mapping(bytes32 => mapping(uint256 => uint256)) private claimed;

    event ChannelOpened(uint256 indexed channelId, address indexed participant1, address indexed participant2, uint32 settleTimeout);
    event ChannelNewDeposit(uint256 indexed channelId, address indexed participant, uint256 totalDeposit);
    event ChannelWithdraw(uint256 indexed channelId, address indexed participant, uint256 totalWithdraw);
    /// @notice The window runs to block (this block + settleTimeout). `balance` is what the
    /// partner's submitted proof commits to (its hash is the side's balanceHash), so either
    /// participant can settle from the log alone; `nonce` 0: no proof, and `balance` is zero.
    event ChannelClosed(uint256 indexed channelId, address indexed closer, uint64 nonce, BalanceData balance);
    /// @notice The closer's newer proof, submitted in the window; `balance` as in ChannelClosed.
    event NonClosingBalanceProofUpdated(uint256 indexed channelId, address indexed closer, uint64 nonce, BalanceData balance);
    /// @notice Paid out; `lockedN` of participantN's pending locks (root `locksRootN`) stay in
    /// a pot for unlock.
    event ChannelSettled(
        uint256 indexed channelId,
        uint256 payout1,
        bytes32 locksRoot1,
        uint256 locked1,
        uint256 payout2,
        bytes32 locksRoot2,
        uint256 locked2
    );
    /// @notice One lock of a pot paid out by `unlock`; `shortfall` is what claims still bear.
    event LockUnlocked(
        uint256 indexed channelId,
        address indexed sender,
        address indexed receiver,
        bytes32 secretHash,
        uint256 toReceiver,
        uint256 toSender,
        uint256 shortfall
    );
    /// @notice A whole pot paid out by `unlockBatch`; the pot is gone.
    event LocksUnlocked(uint256 indexed channelId, address indexed sender, address indexed receiver, uint256 toReceiver, uint256 toSender);

    error SignatureLength(uint256 length);
    error SignatureRecoveryByte(uint8 v);
    error SignatureHighS();
    error SignatureUnrecoverable();
    error LockIndexOutOfRange(uint256 index, uint256 depth);
    error InvalidPartner(address partner);
    error SettleTimeoutOutOfRange(uint32 settleTimeout);
    error ChannelExists(uint256 channelId);
    error NoSuchChannel(uint256 channelId);
    error ChannelAlreadySettled(uint256 channelId);
    error StaleChannelState(uint256 channelId, bytes32 stored, bytes32 submitted);
    error ChannelNotOpen(uint256 channelId);
    error ChannelNotClosed(uint256 channelId);
    error NotParticipant(uint256 channelId, address account);
    error TotalNotIncreased(uint256 current, uint256 requested);
    error WithdrawExpired(uint256 expiry, uint256 blockNumber);
    error WithdrawExceedsChannel(uint256 totalWithdraw, uint256 available);
    error WrongSigner(address expected, address recovered);
    error BalancesDontMatchDeposits(uint256 balances, uint256 available);
    error NonceNotNewer(uint64 current, uint64 submitted);
    error ChallengeWindowOver(uint256 settleBlock, uint256 blockNumber);
    error ChallengeWindowOpen(uint256 settleBlock, uint256 blockNumber);
    error BalanceDataMismatch(address participant);
    error NothingToUnlock(uint256 channelId);
    error NoPendingLocks(uint256 channelId, address sender, address receiver);
    error LocksRootMismatch(bytes32 expected, bytes32 computed);
    error LockAlreadyClaimed(uint256 index);
    error TokenTransferFailed();

    constructor(IERC20 token_, SecretRegistry secretRegistry_) {
        token = token_;
        secretRegistry = secretRegistry_;
        cachedChainId = block.chainid;
        cachedThis = address(this);
        cachedDomainSeparator = buildDomainSeparator();
    }

    // ---- Lifecycle ----------------------------------------------------------------------------

    /// @notice Opens a channel between the caller and `partner`. Its id is
    /// keccak256(abi.encode(caller, partner, block.number)): one new channel per ordered pair and
    /// block.
    function openChannel(address partner, uint32 settleTimeout) external returns (uint256 channelId) {
        if (partner == address(0) || partner == msg.sender) {
            revert InvalidPartner(partner);
        }
        if (settleTimeout < MIN_SETTLE_TIMEOUT || settleTimeout > MAX_SETTLE_TIMEOUT) {
            revert SettleTimeoutOutOfRange(settleTimeout);
        }
        channelId = uint256(keccak256(abi.encode(msg.sender, partner, block.number)));
        if (channelHash[channelId] != bytes32(0)) {
            revert ChannelExists(channelId);
        }
        Channel memory c;
        c.participant1 = msg.sender;
        c.participant2 = partner;
        c.settleTimeout = settleTimeout;
        store(channelId, c);
        emit ChannelOpened(channelId, msg.sender, partner, settleTimeout);
    }

    /// @notice Raises `participant`'s total deposit to `totalDeposit`, pulling the difference
    /// from the caller (who must have approved it). Totals only grow, so a retried transaction
    /// can't deposit twice.
    function setTotalDeposit(uint256 channelId, Channel calldata channel, address participant, uint256 totalDeposit)
        external
    {
        Channel memory c = loadOpen(channelId, channel);
        (Side memory own, Side memory other,) = sides(c, channelId, participant);
        uint256 current = own.deposit;
        if (totalDeposit <= current) {
            revert TotalNotIncreased(current, totalDeposit);
        }
        // Checked arithmetic: both deposits together must fit in uint256.
        other.deposit + totalDeposit;
        own.deposit = totalDeposit;
        store(channelId, c);
        pull(msg.sender, totalDeposit - current);
        emit ChannelNewDeposit(channelId, participant, totalDeposit);
    }

    /// @notice Pays `participant` up to a total of `totalWithdraw`, signed by both participants
    /// before `expiry`.
    function setTotalWithdraw(
        uint256 channelId,
        Channel calldata channel,
        address participant,
        uint256 totalWithdraw,
        uint256 expiry,
        bytes calldata participantSignature,
        bytes calldata partnerSignature
    ) external {
        Channel memory c = loadOpen(channelId, channel);
        (Side memory own, Side memory other, address partner) = sides(c, channelId, participant);
        if (block.number > expiry) {
            revert WithdrawExpired(expiry, block.number);
        }
        uint256 current = own.withdrawn;
        if (totalWithdraw <= current) {
            revert TotalNotIncreased(current, totalWithdraw);
        }
        bytes32 digest = typedDigest(
            keccak256(abi.encode(WITHDRAW_TYPEHASH, channelId, participant, totalWithdraw, expiry))
        );
        requireSigner(digest, participantSignature, participant);
        requireSigner(digest, partnerSignature, partner);
        uint256 deposits = own.deposit + other.deposit;
        if (totalWithdraw + other.withdrawn > deposits) {
            revert WithdrawExceedsChannel(totalWithdraw, deposits - other.withdrawn);
        }
        own.withdrawn = totalWithdraw;
        store(channelId, c);
        push(participant, totalWithdraw - current);
        emit ChannelWithdraw(channelId, participant, totalWithdraw);
    }

    /// @notice Closes at once with final balances both participants signed; they must add up to
    /// everything the channel holds.
    function cooperativeSettle(
        uint256 channelId,
        Channel calldata channel,
        uint256 balance1,
        uint256 balance2,
        bytes calldata signature1,
        bytes calldata signature2
    ) external {
        Channel memory c = loadOpen(channelId, channel);
        bytes32 digest = typedDigest(
            keccak256(
                abi.encode(COOPERATIVE_SETTLE_TYPEHASH, channelId, c.participant1, balance1, c.participant2, balance2)
            )
        );
        requireSigner(digest, signature1, c.participant1);
        requireSigner(digest, signature2, c.participant2);
        uint256 available = availableDeposit(c);
        if (balance1 > available || balance2 != available - balance1) {
            revert BalancesDontMatchDeposits(balance1 > available ? type(uint256).max : balance1 + balance2, available);
        }
        channelHash[channelId] = SETTLED;
        emit ChannelSettled(channelId, balance1, bytes32(0), 0, balance2, bytes32(0), 0);
        push(c.participant1, balance1);
        push(c.participant2, balance2);
    }

    /// @notice Starts the challenge window with the partner's latest balance proof (nonce 0 and
    /// no signature: the partner never paid).
    function closeChannel(
        uint256 channelId,
        Channel calldata channel,
        uint64 nonce,
        BalanceData calldata balance,
        bytes calldata partnerSignature
    ) external {
        Channel memory c = loadOpen(channelId, channel);
        (, Side memory other, address partner) = sides(c, channelId, msg.sender);
        c.closer = msg.sender;
        c.settleBlock = uint64(block.number) + c.settleTimeout;
        if (nonce > 0) {
            requireSigner(proofDigest(channelId, nonce, balance), partnerSignature, partner);
            other.balanceHash = keccak256(abi.encode(balance));
            other.nonce = nonce;
            store(channelId, c);
            emit ChannelClosed(channelId, msg.sender, nonce, balance);
        } else {
            store(channelId, c);
            emit ChannelClosed(channelId, msg.sender, 0, BalanceData(0, 0, bytes32(0)));
        }
    }

    /// @notice During the window, submits the closer's newer balance proof. Anyone may call it
    /// with the non-closing participant's signature over that proof (a watchtower); the
    /// non-closing participant itself needs none.
    function updateNonClosingBalanceProof(
        uint256 channelId,
        Channel calldata channel,
        uint64 nonce,
        BalanceData calldata balance,
        bytes calldata closerSignature,
        bytes calldata nonClosingSignature
    ) external {
        Channel memory c = loadClosed(channelId, channel);
        if (block.number > c.settleBlock) {
            revert ChallengeWindowOver(c.settleBlock, block.number);
        }
        address closer = c.closer;
        (Side memory closing,, address nonCloser) = sides(c, channelId, closer);
        bytes32 digest = proofDigest(channelId, nonce, balance);
        requireSigner(digest, closerSignature, closer);
        if (msg.sender != nonCloser) {
            bytes32 update = typedDigest(keccak256(abi.encode(BALANCE_PROOF_UPDATE_TYPEHASH, channelId, digest)));
            requireSigner(update, nonClosingSignature, nonCloser);
        }
        if (nonce <= closing.nonce) {
            revert NonceNotNewer(closing.nonce, nonce);
        }
        closing.balanceHash = keccak256(abi.encode(balance));
        closing.nonce = nonce;
        store(channelId, c);
        emit NonClosingBalanceProofUpdated(channelId, closer, nonce, balance);
    }

    /// @notice After the window, pays both participants from the submitted proofs; each side's
    /// pending locks stay in a pot for unlock. Callable by anyone.
    function settleChannel(
        uint256 channelId,
        Channel calldata channel,
        BalanceData calldata balance1,
        BalanceData calldata balance2
    ) external {
        Channel memory c = loadClosed(channelId, channel);
        if (block.number <= c.settleBlock) {
            revert ChallengeWindowOpen(c.settleBlock, block.number);
        }
        requireBalanceData(c.side1, c.participant1, balance1);
        requireBalanceData(c.side2, c.participant2, balance2);

        // Each side's share as if every pending lock went to its receiver, each pot then held
        // back from its receiver's share (unlock pays it to the receiver or back to the
        // sender). Counting a lock on the receiver's side before clamping matters when a
        // submitted proof is old: a lock the sender unlocked later, and that the receiver has
        // spent since, must not be paid out a second time from the sender's share.
        uint256 available = availableDeposit(c);
        uint256 max1 = saturatingAdd(balance1.transferredAmount, balance1.lockedAmount);
        uint256 max2 = saturatingAdd(balance2.transferredAmount, balance2.lockedAmount);
        uint256 net1 = netBalance(c.side1, max2, max1, available);
        uint256 net2 = available - net1;
        uint256 locked1 = min(balance1.lockedAmount, net2);
        uint256 locked2 = min(balance2.lockedAmount, net1);
        uint256 payout1 = net1 - locked2;
        uint256 payout2 = net2 - locked1;
        // What stays for unlock reuses the channel's word: no fresh storage slot.
        Settled memory left;
        left.participant1 = c.participant1;
        left.participant2 = c.participant2;
        if (locked1 > 0) {
            left.pot1 = LockPot(balance1.locksRoot, locked1, balance1.lockedAmount - locked1);
        }
        if (locked2 > 0) {
            left.pot2 = LockPot(balance2.locksRoot, locked2, balance2.lockedAmount - locked2);
        }
        storeSettled(channelId, left);
        emit ChannelSettled(channelId, payout1, balance1.locksRoot, locked1, payout2, balance2.locksRoot, locked2);
        push(c.participant1, payout1);
        push(c.participant2, payout2);
    }

    /// @notice Settles one pending lock of `sender` with its membership proof: to the receiver
    /// (the other participant) if its secret was registered by its expiration, else back to the
    /// sender. `settled` is what the channel holds for unlock (ChannelSettled and LockUnlocked
    /// events tell it).
    function unlock(
        uint256 channelId,
        Settled calldata settled,
        address sender,
        Lock calldata lock,
        uint256 index,
        bytes32[] calldata siblings
    ) external {
        Settled memory left = loadSettled(channelId, settled);
        (LockPot memory pot, address receiver) = potOf(left, channelId, sender);
        if (pot.remaining == 0) {
            revert NoPendingLocks(channelId, sender, receiver);
        }
        bytes32 root = rootFromProof(lockLeaf(lock), index, siblings);
        if (root != pot.locksRoot) {
            revert LocksRootMismatch(pot.locksRoot, root);
        }
        if (!claim(keccak256(abi.encode(channelId, sender)), index)) {
            revert LockAlreadyClaimed(index);
        }
        (uint256 toReceiver, uint256 toSender) = payLock(lock, pot);
        pot.remaining -= toReceiver + toSender;
        if (pot.remaining == 0) {
            // An empty pot is no pot: its record is all zeros, whatever it held before.
            pot.locksRoot = bytes32(0);
            pot.shortfall = 0;
        }
        storeSettled(channelId, left);
        emit LockUnlocked(channelId, sender, receiver, lock.secretHash, toReceiver, toSender, pot.shortfall);
        push(receiver, toReceiver);
        push(sender, toSender);
    }

    /// @notice Settles all pending locks of `sender` at once (those not yet unlocked singly);
    /// whatever the locks don't claim returns to the sender, and the pot closes.
    function unlockBatch(uint256 channelId, Settled calldata settled, address sender, Lock[] calldata locks)
        external
    {
        Settled memory left = loadSettled(channelId, settled);
        (LockPot memory pot, address receiver) = potOf(left, channelId, sender);
        if (pot.remaining == 0) {
            revert NoPendingLocks(channelId, sender, receiver);
        }
        bytes32 root = computeLocksRoot(locks);
        if (root != pot.locksRoot) {
            revert LocksRootMismatch(pot.locksRoot, root);
        }
        // The pot closes here, so slots paid now need no mark: only earlier unlocks are skipped.
        mapping(uint256 => uint256) storage paid = claimed[keccak256(abi.encode(channelId, sender))];
        uint256 total = pot.remaining;
        uint256 toReceiver;
        for (uint256 i = 0; i < locks.length && pot.remaining > 0; i++) {
            if (paid[i / 256] & (1 << (i % 256)) == 0) {
                (uint256 r, uint256 s) = payLock(locks[i], pot);
                toReceiver += r;
                pot.remaining -= r + s;
            }
        }
        uint256 toSender = total - toReceiver;
        pot.remaining = 0;
        pot.locksRoot = bytes32(0);
        pot.shortfall = 0;
        storeSettled(channelId, left);
        emit LocksUnlocked(channelId, sender, receiver, toReceiver, toSender);
        push(receiver, toReceiver);
        push(sender, toSender);
    }

    // ---- Verification -------------------------------------------------------------------------
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
        return typedDigest(structHash);
    }

    /// @notice The address that signed `digest`: 65 bytes r ‖ s ‖ v, v ∈ {27, 28}, low s.
    function recoverSigner(bytes32 digest, bytes calldata signature) public pure returns (address signer) {
        if (signature.length != 65) {
            revert SignatureLength(signature.length);
        }
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
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

    // ---- Internals ----------------------------------------------------------------------------

    function proofDigest(uint256 channelId, uint64 nonce, BalanceData calldata balance) private view returns (bytes32) {
        return balanceProofDigest(channelId, nonce, balance.transferredAmount, balance.lockedAmount, balance.locksRoot);
    }

    function typedDigest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    function requireSigner(bytes32 digest, bytes calldata signature, address expected) private pure {
        address signer = recoverSigner(digest, signature);
        if (signer != expected) {
            revert WrongSigner(expected, signer);
        }
    }

    /// @dev The submitted state, if it is the channel's current one.
    function load(uint256 channelId, Channel calldata channel) private view returns (Channel memory c) {
        c = channel;
        bytes32 stored = channelHash[channelId];
        if (stored == bytes32(0)) {
            revert NoSuchChannel(channelId);
        }
        if (stored == SETTLED) {
            revert ChannelAlreadySettled(channelId);
        }
        bytes32 submitted = keccak256(abi.encode(c));
        if (stored != submitted) {
            revert StaleChannelState(channelId, stored, submitted);
        }
    }

    function loadOpen(uint256 channelId, Channel calldata channel) private view returns (Channel memory c) {
        c = load(channelId, channel);
        if (c.settleBlock != 0) {
            revert ChannelNotOpen(channelId);
        }
    }

    function loadClosed(uint256 channelId, Channel calldata channel) private view returns (Channel memory c) {
        c = load(channelId, channel);
        if (c.settleBlock == 0) {
            revert ChannelNotClosed(channelId);
        }
    }

    function store(uint256 channelId, Channel memory c) private {
        channelHash[channelId] = keccak256(abi.encode(c));
    }

    /// @dev `participant`'s side, its partner's side, and its partner (references into `c`).
    function sides(Channel memory c, uint256 channelId, address participant)
        private
        pure
        returns (Side memory own, Side memory other, address partner)
    {
        if (participant == c.participant1) {
            return (c.side1, c.side2, c.participant2);
        }
        if (participant == c.participant2) {
            return (c.side2, c.side1, c.participant1);
        }
        revert NotParticipant(channelId, participant);
    }

    /// @dev Deposits minus withdrawals of both: what the channel holds. Withdrawals are capped
    /// by deposits when made, so this can't underflow.
    function availableDeposit(Channel memory c) private pure returns (uint256) {
        return c.side1.deposit + c.side2.deposit - c.side1.withdrawn - c.side2.withdrawn;
    }

    /// @dev deposit + received − withdrawn − sent, clamped to [0, available]. Saturating sums:
    /// a signed proof with absurd amounts changes who gets what, never whether settlement works.
    function netBalance(Side memory side, uint256 received, uint256 sent, uint256 available)
        private
        pure
        returns (uint256)
    {
        uint256 credit = saturatingAdd(side.deposit, received);
        uint256 debit = saturatingAdd(side.withdrawn, sent);
        return credit > debit ? min(credit - debit, available) : 0;
    }

    function requireBalanceData(Side memory side, address participant, BalanceData calldata balance) private pure {
        bool matches = side.balanceHash == bytes32(0)
            ? balance.transferredAmount == 0 && balance.lockedAmount == 0 && balance.locksRoot == bytes32(0)
            : keccak256(abi.encode(balance)) == side.balanceHash;
        if (!matches) {
            revert BalanceDataMismatch(participant);
        }
    }

    /// @dev Stores what a settled channel holds for unlock; clears the word once nothing is.
    function storeSettled(uint256 channelId, Settled memory left) private {
        channelHash[channelId] = left.pot1.remaining == 0 && left.pot2.remaining == 0
            ? bytes32(0)
            : keccak256(abi.encode(left));
    }

    /// @dev The submitted settled record, if it is the channel's current one.
    function loadSettled(uint256 channelId, Settled calldata settled) private view returns (Settled memory left) {
        left = settled;
        bytes32 stored = channelHash[channelId];
        if (stored == bytes32(0) || stored == SETTLED) {
            revert NothingToUnlock(channelId);
        }
        bytes32 submitted = keccak256(abi.encode(left));
        if (stored != submitted) {
            revert StaleChannelState(channelId, stored, submitted);
        }
    }

    /// @dev `sender`'s pot (a reference into `left`) and the receiver.
    function potOf(Settled memory left, uint256 channelId, address sender)
        private
        pure
        returns (LockPot memory pot, address receiver)
    {
        if (sender == left.participant1) {
            return (left.pot1, left.participant2);
        }
        if (sender == left.participant2) {
            return (left.pot2, left.participant1);
        }
        revert NotParticipant(channelId, sender);
    }

    /// @dev Marks slot `index` of a pot paid; false if it already was.
    function claim(bytes32 key, uint256 index) private returns (bool) {
        uint256 bit = 1 << (index % 256);
        uint256 word = claimed[key][index / 256];
        if (word & bit != 0) {
            return false;
        }
        claimed[key][index / 256] = word | bit;
        return true;
    }

    /// @dev Splits one lock between receiver and sender, never beyond what the pot holds; a
    /// claim first bears what is left of the pot's shortfall (updated in `pot`).
    function payLock(Lock calldata lock, LockPot memory pot) private view returns (uint256 toReceiver, uint256 toSender) {
        uint256 revealed = secretRegistry.getSecretRevealBlockHeight(lock.secretHash);
        if (revealed != 0 && revealed <= lock.expiration) {
            uint256 borne = min(lock.amount, pot.shortfall);
            pot.shortfall -= borne;
            toReceiver = min(lock.amount - borne, pot.remaining);
        } else {
            toSender = min(lock.amount, pot.remaining);
        }
    }

    function pull(address from, uint256 amount) private {
        if (!token.transferFrom(from, address(this), amount)) {
            revert TokenTransferFailed();
        }
    }

    function push(address to, uint256 amount) private {
        if (amount > 0 && !token.transfer(to, amount)) {
            revert TokenTransferFailed();
        }
    }

    function min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    function saturatingAdd(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            uint256 sum = a + b;
            return sum < a ? type(uint256).max : sum;
        }
    }

    function buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev keccak256(left ‖ right) in scratch space.
    function hashPair(bytes32 left, bytes32 right) private pure returns (bytes32 hash) {
        assembly ("memory-safe") {
            mstore(0x00, left)
            mstore(0x20, right)
            hash := keccak256(0x00, 0x40)
        }
    }
}
