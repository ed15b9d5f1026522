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
/// The EIP-712 digest, signer recovery and locks tree match the Rust crate hoplite-htlc byte for
/// byte (its crate docs specify the bytes; htlc/test-vectors pins them).
/// Settlement never reverts on signed inputs, however odd: payouts are clamped to what the
/// channel holds, and payouts plus pending-lock pots always equal it.
contract TokenNetwork {
    enum ChannelState {
        NonExistent,
        Opened,
        Closed
    }

    /// @notice What a participant signed for its own outgoing direction, as submitted at close.
    struct BalanceData {
        uint256 transferredAmount;
        uint256 lockedAmount;
        bytes32 locksRoot;
    }

    struct Participant {
        uint256 deposit;
        uint256 withdrawn;
        /// @dev keccak256(abi.encode(BalanceData)) of the latest proof this participant signed
        /// that was submitted on-chain; zero if none.
        bytes32 balanceHash;
        uint64 nonce;
    }

    struct Channel {
        address participant1;
        ChannelState state;
        uint32 settleTimeout;
        address participant2;
        uint64 settleBlock;
        address closer;
        mapping(address => Participant) participants;
    }

    /// @notice Locked tokens of one direction left after settlement, paid out lock by lock.
    struct LockPot {
        bytes32 locksRoot;
        uint256 remaining;
        /// @dev Slots already paid: bit i of word i / 256.
        mapping(uint256 => uint256) claimed;
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

    /// @notice Bounds of a channel's challenge window, in blocks.
    uint32 public constant MIN_SETTLE_TIMEOUT = 10;
    uint32 public constant MAX_SETTLE_TIMEOUT = 2_000_000;

    IERC20 public immutable token;
    SecretRegistry public immutable secretRegistry;

    uint256 private immutable cachedChainId;
    address private immutable cachedThis;
    bytes32 private immutable cachedDomainSeparator;

    /// @notice The last channel id handed out; ids start at 1.
    uint256 public channelCounter;
    mapping(uint256 => Channel) private channels;
    /// @dev keccak256(lower address, higher address) => the pair's open or closed channel.
    mapping(bytes32 => uint256) private pairChannel;
    /// @dev keccak256(channelId, sender, receiver) => the pot of sender's pending locks.
    mapping(bytes32 => LockPot) private pots;

    event ChannelOpened(uint256 indexed channelId, address indexed participant1, address indexed participant2, uint32 settleTimeout);
    event ChannelNewDeposit(uint256 indexed channelId, address indexed participant, uint256 totalDeposit);
    event ChannelWithdraw(uint256 indexed channelId, address indexed participant, uint256 totalWithdraw);
    event ChannelClosed(uint256 indexed channelId, address indexed closer, uint64 nonce, bytes32 balanceHash);
    event NonClosingBalanceProofUpdated(uint256 indexed channelId, address indexed closer, uint64 nonce, bytes32 balanceHash);
    event ChannelSettled(
        uint256 indexed channelId,
        address participant1,
        uint256 payout1,
        bytes32 locksRoot1,
        uint256 locked1,
        address participant2,
        uint256 payout2,
        bytes32 locksRoot2,
        uint256 locked2
    );
    event LockUnlocked(
        uint256 indexed channelId, address indexed sender, address indexed receiver, bytes32 secretHash, uint256 toReceiver, uint256 toSender
    );

    error SignatureLength(uint256 length);
    error SignatureRecoveryByte(uint8 v);
    error SignatureHighS();
    error SignatureUnrecoverable();
    error LockIndexOutOfRange(uint256 index, uint256 depth);
    error InvalidPartner(address partner);
    error SettleTimeoutOutOfRange(uint32 settleTimeout);
    error ChannelExists(uint256 channelId);
    error WrongChannelState(uint256 channelId, ChannelState state);
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

    /// @notice Opens a channel between the caller and `partner`; one channel per pair at a time.
    function openChannel(address partner, uint32 settleTimeout) external returns (uint256 channelId) {
        if (partner == address(0) || partner == msg.sender) {
            revert InvalidPartner(partner);
        }
        if (settleTimeout < MIN_SETTLE_TIMEOUT || settleTimeout > MAX_SETTLE_TIMEOUT) {
            revert SettleTimeoutOutOfRange(settleTimeout);
        }
        bytes32 pair = pairKey(msg.sender, partner);
        if (pairChannel[pair] != 0) {
            revert ChannelExists(pairChannel[pair]);
        }
        channelId = ++channelCounter;
        pairChannel[pair] = channelId;
        Channel storage channel = channels[channelId];
        channel.participant1 = msg.sender;
        channel.participant2 = partner;
        channel.settleTimeout = settleTimeout;
        channel.state = ChannelState.Opened;
        emit ChannelOpened(channelId, msg.sender, partner, settleTimeout);
    }

    /// @notice Raises `participant`'s total deposit to `totalDeposit`, pulling the difference
    /// from the caller (who must have approved it). Totals only grow, so a retried transaction
    /// can't deposit twice.
    function setTotalDeposit(uint256 channelId, address participant, uint256 totalDeposit) external {
        Channel storage channel = openChannelOf(channelId);
        requireParticipant(channel, channelId, participant);
        Participant storage p = channel.participants[participant];
        uint256 current = p.deposit;
        if (totalDeposit <= current) {
            revert TotalNotIncreased(current, totalDeposit);
        }
        address partner = partnerOf(channel, participant);
        // Checked arithmetic: both deposits together must fit in uint256.
        channel.participants[partner].deposit + totalDeposit;
        p.deposit = totalDeposit;
        pull(msg.sender, totalDeposit - current);
        emit ChannelNewDeposit(channelId, participant, totalDeposit);
    }

    /// @notice Pays `participant` up to a total of `totalWithdraw`, signed by both participants
    /// before `expiry`.
    function setTotalWithdraw(
        uint256 channelId,
        address participant,
        uint256 totalWithdraw,
        uint256 expiry,
        bytes calldata participantSignature,
        bytes calldata partnerSignature
    ) external {
        Channel storage channel = openChannelOf(channelId);
        requireParticipant(channel, channelId, participant);
        if (block.number > expiry) {
            revert WithdrawExpired(expiry, block.number);
        }
        Participant storage p = channel.participants[participant];
        uint256 current = p.withdrawn;
        if (totalWithdraw <= current) {
            revert TotalNotIncreased(current, totalWithdraw);
        }
        address partner = partnerOf(channel, participant);
        bytes32 digest = typedDigest(
            keccak256(abi.encode(WITHDRAW_TYPEHASH, channelId, participant, totalWithdraw, expiry))
        );
        requireSigner(digest, participantSignature, participant);
        requireSigner(digest, partnerSignature, partner);
        Participant storage q = channel.participants[partner];
        uint256 deposits = p.deposit + q.deposit;
        if (totalWithdraw + q.withdrawn > deposits) {
            revert WithdrawExceedsChannel(totalWithdraw, deposits - q.withdrawn);
        }
        p.withdrawn = totalWithdraw;
        push(participant, totalWithdraw - current);
        emit ChannelWithdraw(channelId, participant, totalWithdraw);
    }

    /// @notice Closes at once with final balances both participants signed; they must add up to
    /// everything the channel holds.
    function cooperativeSettle(
        uint256 channelId,
        address participant1,
        uint256 balance1,
        address participant2,
        uint256 balance2,
        bytes calldata signature1,
        bytes calldata signature2
    ) external {
        Channel storage channel = openChannelOf(channelId);
        requireParticipant(channel, channelId, participant1);
        if (partnerOf(channel, participant1) != participant2) {
            revert NotParticipant(channelId, participant2);
        }
        bytes32 digest = typedDigest(
            keccak256(abi.encode(COOPERATIVE_SETTLE_TYPEHASH, channelId, participant1, balance1, participant2, balance2))
        );
        requireSigner(digest, signature1, participant1);
        requireSigner(digest, signature2, participant2);
        uint256 available = availableDeposit(channel);
        if (balance1 > available || balance2 != available - balance1) {
            revert BalancesDontMatchDeposits(balance1 > available ? type(uint256).max : balance1 + balance2, available);
        }
        removeChannel(channelId, channel);
        emit ChannelSettled(channelId, participant1, balance1, bytes32(0), 0, participant2, balance2, bytes32(0), 0);
        push(participant1, balance1);
        push(participant2, balance2);
    }

    /// @notice Starts the challenge window with the partner's latest balance proof (nonce 0 and
    /// no signature: the partner never paid).
    function closeChannel(
        uint256 channelId,
        address partner,
        uint64 nonce,
        BalanceData calldata balance,
        bytes calldata partnerSignature
    ) external {
        Channel storage channel = openChannelOf(channelId);
        requireParticipant(channel, channelId, msg.sender);
        if (partnerOf(channel, msg.sender) != partner) {
            revert NotParticipant(channelId, partner);
        }
        bytes32 balanceHash;
        if (nonce > 0) {
            requireSigner(proofDigest(channelId, nonce, balance), partnerSignature, partner);
            balanceHash = keccak256(abi.encode(balance));
            Participant storage p = channel.participants[partner];
            p.balanceHash = balanceHash;
            p.nonce = nonce;
        }
        channel.state = ChannelState.Closed;
        channel.closer = msg.sender;
        channel.settleBlock = uint64(block.number) + channel.settleTimeout;
        emit ChannelClosed(channelId, msg.sender, nonce, balanceHash);
    }

    /// @notice During the window, submits the closer's newer balance proof. Anyone may call it
    /// with the non-closing participant's signature over that proof (a watchtower); the
    /// non-closing participant itself needs none.
    function updateNonClosingBalanceProof(
        uint256 channelId,
        address closer,
        uint64 nonce,
        BalanceData calldata balance,
        bytes calldata closerSignature,
        bytes calldata nonClosingSignature
    ) external {
        Channel storage channel = channels[channelId];
        if (channel.state != ChannelState.Closed) {
            revert WrongChannelState(channelId, channel.state);
        }
        if (block.number > channel.settleBlock) {
            revert ChallengeWindowOver(channel.settleBlock, block.number);
        }
        if (channel.closer != closer) {
            revert NotParticipant(channelId, closer);
        }
        address nonCloser = partnerOf(channel, closer);
        bytes32 digest = proofDigest(channelId, nonce, balance);
        requireSigner(digest, closerSignature, closer);
        if (msg.sender != nonCloser) {
            bytes32 update = typedDigest(keccak256(abi.encode(BALANCE_PROOF_UPDATE_TYPEHASH, channelId, digest)));
            requireSigner(update, nonClosingSignature, nonCloser);
        }
        Participant storage p = channel.participants[closer];
        if (nonce <= p.nonce) {
            revert NonceNotNewer(p.nonce, nonce);
        }
        bytes32 balanceHash = keccak256(abi.encode(balance));
        p.balanceHash = balanceHash;
        p.nonce = nonce;
        emit NonClosingBalanceProofUpdated(channelId, closer, nonce, balanceHash);
    }

    /// @notice After the window, pays both participants from the submitted proofs; each side's
    /// pending locks stay in a pot for unlock. Callable by anyone.
    function settleChannel(
        uint256 channelId,
        address participant1,
        BalanceData calldata balance1,
        address participant2,
        BalanceData calldata balance2
    ) external {
        Channel storage channel = channels[channelId];
        if (channel.state != ChannelState.Closed) {
            revert WrongChannelState(channelId, channel.state);
        }
        if (block.number <= channel.settleBlock) {
            revert ChallengeWindowOpen(channel.settleBlock, block.number);
        }
        requireParticipant(channel, channelId, participant1);
        if (partnerOf(channel, participant1) != participant2) {
            revert NotParticipant(channelId, participant2);
        }
        Participant storage p1 = channel.participants[participant1];
        Participant storage p2 = channel.participants[participant2];
        requireBalanceData(p1, participant1, balance1);
        requireBalanceData(p2, participant2, balance2);

        uint256 available = availableDeposit(channel);
        uint256 net1 = netBalance(p1, balance2.transferredAmount, balance1.transferredAmount, available);
        uint256 net2 = available - net1;
        uint256 locked1 = min(balance1.lockedAmount, net1);
        uint256 locked2 = min(balance2.lockedAmount, net2);
        removeChannel(channelId, channel);
        openPot(channelId, participant1, participant2, balance1.locksRoot, locked1);
        openPot(channelId, participant2, participant1, balance2.locksRoot, locked2);
        emit ChannelSettled(
            channelId,
            participant1,
            net1 - locked1,
            balance1.locksRoot,
            locked1,
            participant2,
            net2 - locked2,
            balance2.locksRoot,
            locked2
        );
        push(participant1, net1 - locked1);
        push(participant2, net2 - locked2);
    }

    /// @notice Settles one pending lock of `sender` towards `receiver` with its membership proof:
    /// to the receiver if its secret was registered by its expiration, else back to the sender.
    function unlock(
        uint256 channelId,
        address sender,
        address receiver,
        Lock calldata lock,
        uint256 index,
        bytes32[] calldata siblings
    ) external {
        LockPot storage pot = pots[potKey(channelId, sender, receiver)];
        if (pot.remaining == 0) {
            revert NoPendingLocks(channelId, sender, receiver);
        }
        bytes32 root = rootFromProof(lockLeaf(lock), index, siblings);
        if (root != pot.locksRoot) {
            revert LocksRootMismatch(pot.locksRoot, root);
        }
        if (!claim(pot, index)) {
            revert LockAlreadyClaimed(index);
        }
        (uint256 toReceiver, uint256 toSender) = payLock(pot, lock);
        emit LockUnlocked(channelId, sender, receiver, lock.secretHash, toReceiver, toSender);
        push(receiver, toReceiver);
        push(sender, toSender);
    }

    /// @notice Settles all pending locks of `sender` towards `receiver` at once (those not yet
    /// unlocked singly); whatever the locks don't claim returns to the sender, and the pot closes.
    function unlockBatch(uint256 channelId, address sender, address receiver, Lock[] calldata locks) external {
        bytes32 key = potKey(channelId, sender, receiver);
        LockPot storage pot = pots[key];
        if (pot.remaining == 0) {
            revert NoPendingLocks(channelId, sender, receiver);
        }
        bytes32 root = computeLocksRoot(locks);
        if (root != pot.locksRoot) {
            revert LocksRootMismatch(pot.locksRoot, root);
        }
        uint256 toReceiver;
        uint256 toSender;
        for (uint256 i = 0; i < locks.length; i++) {
            if (claim(pot, i)) {
                (uint256 r, uint256 s) = payLock(pot, locks[i]);
                toReceiver += r;
                toSender += s;
                emit LockUnlocked(channelId, sender, receiver, locks[i].secretHash, r, s);
            }
        }
        toSender += pot.remaining;
        pot.remaining = 0;
        pot.locksRoot = bytes32(0);
        push(receiver, toReceiver);
        push(sender, toSender);
    }

    // ---- Views --------------------------------------------------------------------------------

    /// @notice A channel's participants, state, settle timeout and (once closed) settle block.
    function getChannel(uint256 channelId)
        external
        view
        returns (address participant1, address participant2, ChannelState state, uint32 settleTimeout, uint64 settleBlock, address closer)
    {
        Channel storage channel = channels[channelId];
        return (channel.participant1, channel.participant2, channel.state, channel.settleTimeout, channel.settleBlock, channel.closer);
    }

    /// @notice A participant's deposit, withdrawn total, and submitted balance proof.
    function getParticipant(uint256 channelId, address participant)
        external
        view
        returns (uint256 deposit, uint256 withdrawn, uint64 nonce, bytes32 balanceHash)
    {
        Participant storage p = channels[channelId].participants[participant];
        return (p.deposit, p.withdrawn, p.nonce, p.balanceHash);
    }

    /// @notice The channel of a pair that is open or closed but not settled; 0 if none.
    function getChannelId(address a, address b) external view returns (uint256) {
        return pairChannel[pairKey(a, b)];
    }

    /// @notice What is left of `sender`'s pending locks towards `receiver` after settlement.
    function getLockPot(uint256 channelId, address sender, address receiver)
        external
        view
        returns (bytes32 locksRoot, uint256 remaining)
    {
        LockPot storage pot = pots[potKey(channelId, sender, receiver)];
        return (pot.locksRoot, pot.remaining);
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

    function openChannelOf(uint256 channelId) private view returns (Channel storage channel) {
        channel = channels[channelId];
        if (channel.state != ChannelState.Opened) {
            revert WrongChannelState(channelId, channel.state);
        }
    }

    function requireParticipant(Channel storage channel, uint256 channelId, address account) private view {
        if (account != channel.participant1 && account != channel.participant2) {
            revert NotParticipant(channelId, account);
        }
    }

    function partnerOf(Channel storage channel, address participant) private view returns (address) {
        return participant == channel.participant1 ? channel.participant2 : channel.participant1;
    }

    /// @dev Deposits minus withdrawals of both: what the channel holds. Withdrawals are capped
    /// by deposits when made, so this can't underflow.
    function availableDeposit(Channel storage channel) private view returns (uint256) {
        Participant storage p1 = channel.participants[channel.participant1];
        Participant storage p2 = channel.participants[channel.participant2];
        return p1.deposit + p2.deposit - p1.withdrawn - p2.withdrawn;
    }

    /// @dev deposit + received − withdrawn − sent, clamped to [0, available]. Saturating sums:
    /// a signed proof with absurd amounts changes who gets what, never whether settlement works.
    function netBalance(Participant storage p, uint256 received, uint256 sent, uint256 available)
        private
        view
        returns (uint256)
    {
        uint256 credit = saturatingAdd(p.deposit, received);
        uint256 debit = saturatingAdd(p.withdrawn, sent);
        return credit > debit ? min(credit - debit, available) : 0;
    }

    function requireBalanceData(Participant storage p, address participant, BalanceData calldata balance) private view {
        bool matches = p.balanceHash == bytes32(0)
            ? balance.transferredAmount == 0 && balance.lockedAmount == 0 && balance.locksRoot == bytes32(0)
            : keccak256(abi.encode(balance)) == p.balanceHash;
        if (!matches) {
            revert BalanceDataMismatch(participant);
        }
    }

    function removeChannel(uint256 channelId, Channel storage channel) private {
        address a = channel.participant1;
        address b = channel.participant2;
        delete channel.participants[a];
        delete channel.participants[b];
        delete channels[channelId];
        delete pairChannel[pairKey(a, b)];
    }

    function openPot(uint256 channelId, address sender, address receiver, bytes32 root, uint256 locked) private {
        if (locked > 0) {
            LockPot storage pot = pots[potKey(channelId, sender, receiver)];
            pot.locksRoot = root;
            pot.remaining = locked;
        }
    }

    /// @dev Marks slot `index` paid; false if it already was.
    function claim(LockPot storage pot, uint256 index) private returns (bool) {
        uint256 bit = 1 << (index % 256);
        uint256 word = pot.claimed[index / 256];
        if (word & bit != 0) {
            return false;
        }
        pot.claimed[index / 256] = word | bit;
        return true;
    }

    /// @dev Splits one lock between receiver and sender, never beyond what the pot holds.
    function payLock(LockPot storage pot, Lock calldata lock) private returns (uint256 toReceiver, uint256 toSender) {
        uint256 amount = min(lock.amount, pot.remaining);
        pot.remaining -= amount;
        uint256 revealed = secretRegistry.getSecretRevealBlockHeight(lock.secretHash);
        if (revealed != 0 && revealed <= lock.expiration) {
            toReceiver = amount;
        } else {
            toSender = amount;
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

    function pairKey(address a, address b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function potKey(uint256 channelId, address sender, address receiver) private pure returns (bytes32) {
        return keccak256(abi.encode(channelId, sender, receiver));
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
        assembly {
            mstore(0x00, left)
            mstore(0x20, right)
            hash := keccak256(0x00, 0x40)
        }
    }
}
