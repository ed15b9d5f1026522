//! Withdrawing from an open channel on the real contract: both sign the new withdrawn total,
//! the contract pays it out, both ends apply it, and the channel goes on; while a withdrawal
//! is under way the channel carries nothing new; a refused or unanswered one frees it again.
//! Every delivery is followed by the testkit's conservation check.

use hoplite_htlc::{Amount, BlockNumber, SendError, Side, Violation};
use hoplite_node::testkit::{Network, START_TOKENS, create_network, paid_channel};
use hoplite_node::wire::Message;
use hoplite_node::{Close, CommandError, Event};

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

fn withdrawn(net: &Network, i: usize) -> Vec<Event> {
    net.events(i)
        .iter()
        .filter(|e| matches!(e, Event::Withdrawn { .. } | Event::WithdrawFailed { .. }))
        .cloned()
        .collect()
}

fn tokens(net: &mut Network, i: usize) -> u128 {
    u128::try_from(net.tokens(i).to_u256()).unwrap()
}

#[test]
fn a_withdrawal_pays_part_of_a_balance_out_and_the_channel_goes_on() {
    let (mut net, channel) = paid_channel();
    let before = tokens(&mut net, 0);
    let now = net.now();
    net.nodes[0].withdraw(now, channel, amount(400)).unwrap();
    net.settle();
    net.deliver_all();
    net.mine_and_deliver(1);
    assert_eq!(
        withdrawn(&net, 0),
        [Event::Withdrawn {
            channel,
            total: amount(400)
        }]
    );
    assert_eq!(
        tokens(&mut net, 0),
        before + 400,
        "paid to node 0's account"
    );
    assert_eq!(tokens(&mut net, 0), u128::from(START_TOKENS) - 1_000 + 400);
    // Both ends see 450 left for node 0.
    assert_eq!(net.spendable(0, channel), amount(450));
    let partner_view = net.nodes[1]
        .channel(channel)
        .unwrap()
        .spendable(Side::Partner);
    assert_eq!(partner_view, amount(450));
    // The channel goes on, both ways, and a second withdrawal raises the total.
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(50)).unwrap();
    net.nodes[1].send_direct(now, channel, amount(20)).unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(net.spendable(0, channel), amount(420));
    net.nodes[0].withdraw(now, channel, amount(20)).unwrap();
    net.settle();
    net.deliver_all();
    net.mine_and_deliver(1);
    assert_eq!(tokens(&mut net, 0), before + 420);
    assert_eq!(net.spendable(0, channel), amount(400));
    // Restarted, both replay the chain (the first withdrawal's lower total among it) and
    // keep the channel open and usable.
    net.restart(0);
    net.restart(1);
    net.mine_and_deliver(2);
    for i in [0, 1] {
        assert!(
            !net.events(i)
                .iter()
                .any(|e| matches!(e, Event::ChannelClosed { .. })),
            "node {i}: {:?}",
            net.events(i)
        );
    }
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(10)).unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(net.spendable(0, channel), amount(390));
    net.check_conservation();
    net.check_agreement();
}

#[test]
fn more_than_the_balance_is_refused_and_a_frozen_channel_carries_nothing() {
    let (mut net, channel) = paid_channel();
    let now = net.now();
    let refused = net.nodes[0].withdraw(now, channel, amount(851));
    assert!(matches!(
        refused,
        Err(CommandError::Channel(SendError::Rule(
            Violation::InsufficientBalance { .. }
        )))
    ));
    net.nodes[0].withdraw(now, channel, amount(100)).unwrap();
    net.settle();
    // No cooperative close either: the withdrawal could land after the settlement is signed.
    assert_eq!(
        net.nodes[0].close_channel(now, channel, Close::Cooperative),
        Err(CommandError::ChannelClosing(channel))
    );
    // Asked, not yet answered: we send nothing new.
    assert_eq!(
        net.nodes[0].send_direct(now, channel, amount(1)),
        Err(CommandError::ChannelClosing(channel))
    );
    // The request reaches the partner, which signs: it sends nothing new either until the
    // chain shows the withdrawal.
    assert!(net.deliver_next());
    net.settle();
    assert_eq!(
        net.nodes[1].send_direct(now, channel, amount(1)),
        Err(CommandError::ChannelClosing(channel))
    );
    assert_eq!(
        net.nodes[1].close_channel(now, channel, Close::Cooperative),
        Err(CommandError::ChannelClosing(channel))
    );
    net.deliver_all();
    net.mine_and_deliver(1);
    net.nodes[1].send_direct(now, channel, amount(1)).unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(net.spendable(0, channel), amount(851 - 100));
    net.check_conservation();
}

#[test]
fn an_unanswered_withdrawal_expires_and_the_channel_goes_on() {
    let (mut net, channel) = paid_channel();
    let before = tokens(&mut net, 0);
    net.disconnect(1);
    let now = net.now();
    net.nodes[0].withdraw(now, channel, amount(100)).unwrap();
    net.settle();
    net.deliver_all();
    let timeout = net.nodes[0].config().close_timeout;
    net.mine_and_deliver(timeout + 1);
    assert_eq!(
        withdrawn(&net, 0),
        [Event::WithdrawFailed {
            channel,
            refused: false
        }]
    );
    assert_eq!(tokens(&mut net, 0), before);
    net.reconnect(1);
    let now = net.now();
    net.nodes[0].send_direct(now, channel, amount(10)).unwrap();
    net.settle();
    net.deliver_all();
    assert_eq!(net.spendable(0, channel), amount(840));
    net.check_conservation();
    net.check_agreement();
}

#[test]
fn a_pending_lock_blocks_a_withdrawal_until_it_is_claimed() {
    let mut net = create_network(3);
    let channel = net.open_channel(0, 1, [1_000, 500]);
    net.open_channel(1, 2, [1_000, 500]);
    // A payment 0 → 2 holds a lock on the channel until it is claimed.
    let payment = net.send_payment(0, 2, 100);
    let now = net.now();
    assert_eq!(
        net.nodes[0].withdraw(now, channel, amount(100)),
        Err(CommandError::LocksPending(channel))
    );
    net.claim_payment(&[0, 1, 2], payment);
    net.nodes[0].withdraw(now, channel, amount(100)).unwrap();
    net.settle();
    net.deliver_all();
    net.mine_and_deliver(1);
    assert!(
        withdrawn(&net, 0)
            .iter()
            .any(|e| matches!(e, Event::Withdrawn { .. })),
        "{:?}",
        net.events(0)
    );
    net.check_conservation();
}

#[test]
fn a_partner_signs_no_more_than_its_view_allows_and_stays_free() {
    let (mut net, channel) = paid_channel();
    let block = net.block().0;
    // Node 0 holds 850: a request for more, one that freezes the channel too long, and one
    // already expired are refused; node 1 signs nothing and goes on paying.
    for (total, expiry) in [(851, block + 5), (100, block + 1_000), (100, block)] {
        let request = Message::WithdrawRequest {
            channel,
            round: total + expiry,
            total: amount(total),
            expiry: BlockNumber(expiry),
        };
        let errors = net.inject_message(0, 1, request);
        assert!(errors.is_empty(), "{errors:?}");
        let now = net.now();
        net.nodes[1].send_direct(now, channel, amount(1)).unwrap();
        net.settle();
        net.deliver_all();
    }
    assert!(withdrawn(&net, 0).is_empty());
    assert_eq!(net.spendable(0, channel), amount(853));
    net.check_conservation();
    net.check_agreement();
}
