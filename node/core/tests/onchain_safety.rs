//! An honest party's funds on a chain that is not perfect: requests that fail and conflict
//! (the testkit's mempool), closes that freeze the channel, settlement from the chain's own log
//! whatever the partner submitted, and locks whose fate the registry decides.

use hoplite_chain::evm::complete;
use hoplite_htlc::testing::key;
use hoplite_htlc::{Amount, BalanceChange, Side};
use hoplite_node::testkit::{Network, START_TOKENS, create_network};
use hoplite_node::wire::{Envelope, Message};
use hoplite_node::{ChainRequest, Close, CommandError, Event, PeerError};

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

/// Node `i`'s tokens on-chain, counted from what it was minted.
fn gained(net: &mut Network, i: usize) -> i128 {
    i128::try_from(net.tokens(i).to_u256()).unwrap() - i128::from(START_TOKENS)
}

fn failures(net: &Network, i: usize) -> usize {
    net.events(i)
        .iter()
        .filter(|e| matches!(e, Event::ChainRequestFailed { .. }))
        .count()
}

fn settle_window(net: &Network) -> u64 {
    u64::from(net.nodes[0].config().settle_timeout)
}

/// Delivers everything, dropping (and returning) the messages `pick` picks.
fn deliver_dropping(
    net: &mut Network,
    pick: impl Fn(usize, usize, &Message) -> bool,
) -> Vec<Message> {
    let mut dropped = Vec::new();
    while let Some(next) = net.in_flight.front().cloned() {
        match next.message() {
            Some(message) if pick(next.from, next.to, &message) => {
                net.in_flight.pop_front();
                dropped.push(message);
            }
            _ => {
                net.deliver_next();
            }
        }
    }
    dropped
}

/// `payer` pays `payee` `amount`; the payee gets the secret, and its claim back to the payer
/// is lost: the lock stays pending with the payee holding its secret.
fn pay_with_claim_lost(net: &mut Network, payer: usize, payee: usize, amount: u64) {
    net.send_payment(payer, payee, amount);
    deliver_dropping(net, |from, to, m| {
        (from, to) == (payee, payer) && matches!(m, Message::RevealSecret { .. })
    });
}

/// `payer` pays `payee` `amount`; the payee's request for the secret is lost: the lock stays
/// pending and the payee never learns its secret.
fn pay_with_secret_withheld(net: &mut Network, payer: usize, payee: usize, amount: u64) {
    net.send_payment(payer, payee, amount);
    deliver_dropping(net, |from, _, m| {
        from == payee && matches!(m, Message::SecretRequest { .. })
    });
}

/// Mines until the first lock to node `to` in `channel` is in its last block; returns it.
fn mine_to_last_block_of_the_lock_to(
    net: &mut Network,
    to: usize,
    channel: hoplite_htlc::ChannelId,
) -> hoplite_htlc::Lock {
    let lock = *net.nodes[to]
        .channel(channel)
        .unwrap()
        .participant(Side::Partner)
        .locks()
        .iter()
        .next()
        .unwrap();
    while net.block() < lock.expiration {
        net.mine(1);
    }
    lock
}

/// The `LockExpired` of `lock` that node 0's owner signs on its own copy of the channel, behind
/// its node's back.
fn forged_lock_expired(
    forged: &mut hoplite_htlc::Channel,
    lock: &hoplite_htlc::Lock,
    block: hoplite_htlc::BlockNumber,
) -> Message {
    let change = BalanceChange::LockExpired {
        secret_hash: lock.secret_hash,
    };
    let update = forged.send(&key(1, 0), change, block).unwrap();
    Message::Update {
        update: Box::new(update),
        onward: None,
    }
}

#[test]
fn a_failed_update_is_sent_again_and_the_stale_closer_gains_nothing() {
    failed_update_is_sent_again(0);
}

#[test]
fn a_node_whose_view_of_the_chain_lags_a_block_answers_the_stale_close_too() {
    failed_update_is_sent_again(1);
}

fn failed_update_is_sent_again(lag: u64) {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    let now = net.now();
    for (from, paid) in [(0, 300), (1, 100), (1, 150)] {
        net.nodes[from]
            .send_direct(now, channel, amount(paid))
            .unwrap();
        net.settle();
        net.deliver_all();
    }
    net.use_mempool();
    net.lag_chain(lag);
    net.fail_chain_requests(0, 1, |r| matches!(r, ChainRequest::UpdateNonClosing { .. }));
    // Node 1 closes behind its node's back with node 0's proof and none of its own.
    let proof = *net.nodes[1]
        .channel(channel)
        .unwrap()
        .participant(Side::Partner)
        .latest_proof()
        .unwrap();
    complete(net.chain(1).close_channel(channel, Some(&proof))).unwrap();
    net.sync_chain();
    // Node 0's first update fails; it is sent again `chain_retry_after` blocks later and lands
    // in the window.
    net.mine_and_deliver(2 + lag + net.nodes[0].config().chain_retry_after);
    assert_eq!(failures(&net, 0), 1);
    let onchain = net.nodes[0].onchain_channel(channel).unwrap();
    assert_eq!(onchain.side(net.address(1)).unwrap().nonce, 2);
    net.mine_and_deliver(settle_window(&net) + 3);
    assert_eq!(
        [gained(&mut net, 0), gained(&mut net, 1)],
        [-50, 50],
        "as signed off-chain (the stale close said -300, 300)"
    );
}

#[test]
fn a_failed_secret_registration_is_sent_again_and_the_payee_is_paid() {
    let mut net = create_network(2);
    net.open_channel(0, 1, [1_000, 0]);
    net.use_mempool();
    net.fail_chain_requests(1, 1, |r| matches!(r, ChainRequest::RegisterSecret { .. }));
    let payment = net.send_payment(0, 1, 100);
    // The payee gets the secret; its claim never reaches the payer, which then goes offline.
    let dropped = deliver_dropping(&mut net, |from, _, m| {
        from == 1 && matches!(m, Message::RevealSecret { .. })
    });
    assert_eq!(dropped.len(), 1);
    net.disconnect(0);
    net.mine_and_deliver(settle_window(&net) + 40);
    let registrations_failed = net.events(1).iter().filter(|e| {
        matches!(
            e,
            Event::ChainRequestFailed {
                request: ChainRequest::RegisterSecret { .. },
                ..
            }
        )
    });
    assert_eq!(
        registrations_failed.count(),
        1,
        "the first registration failed"
    );
    assert!(net.events(1).iter().any(|e| matches!(
        e,
        Event::PaymentReceived { payment: p, .. } if *p == payment
    )));
    assert_eq!([gained(&mut net, 0), gained(&mut net, 1)], [-100, 100]);
    net.reconnect(0);
    net.deliver_all();
}

#[test]
fn two_pots_owed_to_one_node_are_unlocked_one_transaction_at_a_time() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    // 1 pays 0 (lock A, 1 → 0): 0 gets the secret, its claim is lost.
    pay_with_claim_lost(&mut net, 1, 0, 100);
    net.mine_and_deliver(5);
    // 0 pays 1 (lock B, 0 → 1, expiring later): 1 never gets the secret.
    pay_with_secret_withheld(&mut net, 0, 1, 200);
    net.use_mempool();
    // A is in danger: 0 registers its secret and closes. After the window both pots are 0's
    // to unlock: A was claimed, B was not. Two unlocks in one block would conflict.
    net.mine_and_deliver(settle_window(&net) + 40);
    assert!(
        net.nodes[0].onchain_channel(channel).is_none(),
        "settled, unlocked and forgotten"
    );
    assert_eq!([gained(&mut net, 0), gained(&mut net, 1)], [100, -100]);
    assert_eq!(net.nodes[0].lock_changes_kept(channel), 0);
}

#[test]
fn a_unilateral_close_freezes_the_channel() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(100)).unwrap();
    net.settle();
    net.deliver_all();
    net.use_mempool();
    net.nodes[0]
        .close_channel(now, channel, Close::Unilateral)
        .unwrap();
    net.settle();
    // Before the close is mined: node 0 sends nothing more and applies nothing new.
    assert_eq!(
        net.nodes[0].send_direct(now, channel, amount(1)),
        Err(CommandError::ChannelClosing(channel))
    );
    net.nodes[1].send_direct(now, channel, amount(50)).unwrap();
    net.settle();
    let message = net.in_flight.pop_front().unwrap();
    let errors = net.inject(1, 0, message.bytes);
    assert!(
        errors.iter().any(|e| matches!(
            e,
            Event::PeerMessageRejected {
                error: PeerError::ChannelClosing(_),
                ..
            }
        )),
        "{errors:?}"
    );
    net.mine_and_deliver(settle_window(&net) + 3);
    assert!(
        net.events(0)
            .iter()
            .any(|e| matches!(e, Event::ChannelSettled { .. }))
    );
    // Paid out at the state node 0 closed with: node 1's 50 never counted.
    assert_eq!(
        [gained(&mut net, 0), gained(&mut net, 1)],
        [-1_000 + 900, -1_000 + 1_100]
    );
}

#[test]
fn an_old_state_of_ours_with_a_lock_is_settled_and_its_lock_comes_back() {
    let mut net = Network::new(2, 1, |_, config| config.max_attempts = 1);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    let now = net.now();
    // Direct transfers (metering) add nothing to the lock history.
    for _ in 0..20 {
        net.nodes[0].send_direct(now, channel, amount(1)).unwrap();
        net.settle();
        net.deliver_all();
    }
    assert_eq!(net.nodes[0].lock_changes_kept(channel), 0);
    // 0 locks 100 to 1 (state k); 1 never gets the secret; the lock expires off-chain (k+1),
    // which 1 applies and acknowledges.
    pay_with_secret_withheld(&mut net, 0, 1, 100);
    let stale = *net.nodes[1]
        .channel(channel)
        .unwrap()
        .participant(Side::Partner)
        .latest_proof()
        .unwrap();
    net.mine_and_deliver(40);
    let latest = net.nodes[1]
        .channel(channel)
        .unwrap()
        .participant(Side::Partner)
        .latest_proof()
        .copied()
        .unwrap();
    assert_eq!(
        latest.proof.nonce.0,
        stale.proof.nonce.0 + 1,
        "the lock expired"
    );
    assert_eq!(net.nodes[0].lock_changes_kept(channel), 2);
    // 1 closes behind its node's back with 0's state k, whose lock 0 has expired since.
    complete(net.chain(1).close_channel(channel, Some(&stale))).unwrap();
    net.sync_chain();
    net.mine_and_deliver(settle_window(&net) + 3);
    assert!(
        net.nodes[0].onchain_channel(channel).is_none(),
        "settled, unlocked and forgotten"
    );
    assert_eq!(
        [gained(&mut net, 0), gained(&mut net, 1)],
        [-20, 20],
        "the lock came back to 0"
    );
    assert_eq!(net.nodes[0].lock_changes_kept(channel), 0);
}

#[test]
fn a_lock_expired_after_the_secret_was_registered_in_time_is_refused() {
    let mut net = Network::new(2, 1, |_, config| config.max_attempts = 1);
    let channel = net.open_channel(0, 1, [1_000, 0]);
    net.send_payment(0, 1, 100);
    // The payer reveals the secret to the payee; the reveal is lost.
    let dropped = deliver_dropping(&mut net, |from, _, m| {
        from == 0 && matches!(m, Message::RevealSecret { .. })
    });
    let [Message::RevealSecret { secret }] = dropped[..] else {
        panic!("one reveal: {dropped:?}");
    };
    let lock = mine_to_last_block_of_the_lock_to(&mut net, 1, channel);
    // The secret is registered in the lock's last block (the payee learns of it only once the
    // lock has expired, too late to close in danger).
    let before = net.nodes[0].channel(channel).unwrap().clone();
    complete(net.chain(0).register_secret(&secret)).unwrap();
    net.mine(1);
    assert!(
        net.in_flight.iter().all(|m| !matches!(
            m.message(),
            Some(Message::Update { update, .. })
                if matches!(update.change, BalanceChange::LockExpired { .. })
        )),
        "the honest payer expires nothing: {:?}",
        net.in_flight
            .iter()
            .map(|m| m.message())
            .collect::<Vec<_>>()
    );
    net.in_flight.clear();
    // The payer's owner expires it anyway, behind its node's back.
    let mut forged = before;
    let message = forged_lock_expired(&mut forged, &lock, net.block());
    // The registry decides: the lock is the payee's, which refuses and closes to claim it.
    assert_eq!(
        net.inject_message(0, 1, message),
        [PeerError::LockClaimed(lock.secret_hash)]
    );
    net.in_flight.clear();
    net.mine_and_deliver(settle_window(&net) + 3);
    net.in_flight.clear();
    assert_eq!([gained(&mut net, 0), gained(&mut net, 1)], [-100, 100]);
}

#[test]
fn a_failed_open_leaves_no_deposit_for_a_later_channel() {
    let mut net = create_network(2);
    net.fail_chain_requests(0, 1, |r| matches!(r, ChainRequest::OpenChannel { .. }));
    let (zero, one) = (net.address(0), net.address(1));
    let now = net.now();
    net.nodes[0].open_channel(now, one, amount(500)).unwrap();
    net.settle();
    assert_eq!(failures(&net, 0), 1);
    // Later the partner opens one: node 0 deposits nothing into it.
    net.nodes[1].open_channel(now, zero, amount(300)).unwrap();
    net.settle();
    net.deliver_all();
    net.mine_and_deliver(3);
    let channel = net.nodes[0].channels().next().unwrap().id();
    let onchain = net.nodes[0].onchain_channel(channel).unwrap();
    assert_eq!(
        onchain.side(zero).unwrap().deposit,
        alloy_primitives::U256::ZERO
    );
    assert_eq!(
        onchain.side(one).unwrap().deposit,
        alloy_primitives::U256::from(300)
    );
}

#[test]
fn a_partner_that_signs_a_broken_state_gets_its_channel_closed() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(10)).unwrap();
    net.settle();
    let message = net.in_flight.pop_front().unwrap();
    let Envelope::Message {
        id,
        message: Message::Update { mut update, onward },
    } = message.envelope()
    else {
        panic!("a balance update");
    };
    // Node 0 signs a proof that transfers more than the change says.
    let domain = net.nodes[0].config().token_network.domain_separator();
    let mut proof = update.proof.proof;
    proof.transferred_amount = amount(500);
    update.proof = proof.sign(&key(1, 0), &domain);
    let bytes = Envelope::Message {
        id,
        message: Message::Update { update, onward },
    }
    .encode();
    let events = net.inject(0, 1, bytes);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelBroken { .. }))
    );
    assert!(
        net.events(1)
            .iter()
            .any(|e| matches!(e, Event::ChannelClosed { closer, .. } if *closer == net.address(1))),
        "{:?}",
        net.events(1)
    );
    net.mine_and_deliver(settle_window(&net) + 3);
    assert_eq!([gained(&mut net, 0), gained(&mut net, 1)], [0, 0]);
}

#[test]
fn a_payee_that_learns_the_secret_too_late_to_claim_on_chain_lets_the_payment_fail_whole_and_stays_open()
 {
    let mut net = Network::new(2, 1, |_, config| config.max_attempts = 1);
    let channel = net.open_channel(0, 1, [1_000, 0]);
    let payment = net.send_payment(0, 1, 100);
    // The payer's reveal is held up until the payee's lock is in its last block.
    let reveal = loop {
        let next = net.in_flight.pop_front().expect("the payment is under way");
        if matches!(next.message(), Some(Message::RevealSecret { .. })) {
            break next;
        }
        net.in_flight.push_front(next);
        net.deliver_next();
    };
    mine_to_last_block_of_the_lock_to(&mut net, 1, channel);
    net.in_flight.push_back(reveal);
    net.deliver_all();
    net.mine_and_deliver(settle_window(&net) + 3);
    // The payee could no longer claim on-chain, so it did not claim at all (nor close to
    // claim): the payment failed whole, no token moved, and the channel goes on.
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::PaymentFailed { payment: p, .. } if *p == payment
    )));
    assert!(
        !net.events(0)
            .iter()
            .any(|e| matches!(e, Event::PaymentSent { .. }))
    );
    assert!(
        !net.events(1)
            .iter()
            .any(|e| matches!(e, Event::PaymentReceived { .. }))
    );
    assert_eq!([gained(&mut net, 0), gained(&mut net, 1)], [-1_000, 0]);
    assert_eq!(net.spendable(0, channel), amount(1_000));
}

#[test]
fn a_single_unlock_by_the_partner_leaves_the_rest_of_its_pot_to_us() {
    let mut net = Network::new(2, 1, |_, config| config.max_attempts = 1);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    // 1 pays 0 100 (lock C): 0 gets the secret, its claim is lost.
    pay_with_claim_lost(&mut net, 1, 0, 100);
    net.mine_and_deliver(5);
    // 1 pays 0 50 (lock A, expiring later): 0 never gets the secret.
    pay_with_secret_withheld(&mut net, 1, 0, 50);
    let locks = net.nodes[1]
        .channel(channel)
        .unwrap()
        .participant(Side::Ours)
        .locks()
        .clone();
    let a = *locks.iter().find(|l| l.amount == amount(50)).unwrap();
    net.use_mempool();
    // C comes into danger: 0 registers its secret and closes. Mine until it settles.
    let settled = |net: &Network| {
        net.nodes[0]
            .onchain_channel(channel)
            .is_some_and(|c| matches!(c.phase, hoplite_chain::events::Phase::Settled { .. }))
    };
    for _ in 0..settle_window(&net) + 40 {
        if settled(&net) {
            break;
        }
        net.mine_and_deliver(1);
    }
    assert!(settled(&net));
    // Before 0's batch lands, 1 unlocks A alone (back to it: its secret was never revealed).
    let proof = locks.proof(&a.secret_hash).unwrap();
    let sender = net.address(1);
    complete(net.chain(1).unlock(channel, sender, &a, &proof)).unwrap();
    net.sync_chain();
    let paid = |net: &Network| {
        net.events(0).iter().any(|e| {
            matches!(
                e,
                Event::PaymentReceived { amount: a, .. } if *a == amount(100)
            )
        })
    };
    assert!(!paid(&net), "C is not paid out yet: only A was");
    net.mine_and_deliver(10);
    // C is still 0's to claim, and it claims it.
    assert!(
        net.nodes[0].onchain_channel(channel).is_none(),
        "settled, unlocked and forgotten"
    );
    assert_eq!([gained(&mut net, 0), gained(&mut net, 1)], [100, -100]);
    assert!(paid(&net));
}

#[test]
fn a_lock_whose_secret_was_public_before_it_came_is_refused_and_closes_nothing() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 0]);
    let invoice = net.invoice(1, 100);
    // Node 0's owner makes a secret, registers it, and only then signs a lock on it to 1
    // (behind its node's back: its node never sees this state).
    let secret = hoplite_htlc::Secret(alloy_primitives::keccak256(b"public first"));
    complete(net.chain(0).register_secret(&secret)).unwrap();
    net.sync_chain();
    let key0 = key(1, 0);
    let mut forged = net.nodes[0].channel(channel).unwrap().clone();
    let lock = hoplite_htlc::Lock {
        amount: amount(100),
        expiration: hoplite_htlc::BlockNumber(net.block().0 + 30),
        secret_hash: secret.hash(),
    };
    let update = forged
        .send(&key0, BalanceChange::LockedTransfer { lock }, net.block())
        .unwrap();
    let onward = hoplite_node::wire::Onward {
        payment: invoice.payment,
        payer: net.address(0),
        payee: net.address(1),
        amount: amount(100),
        hops: Vec::new(),
        keysend: None,
    };
    let message = Message::Update {
        update: Box::new(update),
        onward: Some(Box::new(onward)),
    };
    assert!(
        net.inject_message(0, 1, message).is_empty(),
        "the lock is taken"
    );
    net.in_flight.clear();
    // After the expiration, 0 expires the lock.
    while net.block() <= lock.expiration {
        net.mine(1);
    }
    let message = forged_lock_expired(&mut forged, &lock, net.block());
    // The lock it refused it lets expire, although the registry shows it claimable: nobody
    // closes, nothing moves.
    assert!(net.inject_message(0, 1, message).is_empty());
    net.in_flight.clear();
    // (Node 0's own node never saw these states: no delivery, which checks both ends agree.)
    net.mine(5);
    net.in_flight.clear();
    assert!(
        !net.events(1)
            .iter()
            .any(|e| matches!(e, Event::ChannelClosed { .. }))
    );
    assert!(
        net.nodes[1]
            .onchain_channel(channel)
            .is_some_and(|c| c.phase == hoplite_chain::events::Phase::Opened)
    );
    assert_eq!(
        net.nodes[1]
            .channel(channel)
            .unwrap()
            .participant(Side::Partner)
            .locks()
            .len(),
        0
    );
}
