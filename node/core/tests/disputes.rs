//! Disputes on the real contract: a partner's stale close answered in the window, and a
//! mediator cut off after learning a secret that claims on-chain and loses nothing.

use hoplite_htlc::{Amount, Side};
use hoplite_node::Event;
use hoplite_node::testkit::{START_TOKENS, create_network};
use hoplite_node::wire::Message;

fn amount(n: u64) -> Amount {
    Amount::from(n)
}

#[test]
fn a_stale_close_is_answered_with_the_newer_proof() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 1_000]);
    let now = net.now();
    for (from, paid) in [(0, 300), (0, 200), (1, 100), (1, 150)] {
        net.nodes[from]
            .send_direct(now, channel, amount(paid))
            .unwrap();
        net.settle();
        net.deliver_all();
    }
    assert_eq!(net.spendable(0, channel), amount(750));
    assert_eq!(net.spendable(1, channel), amount(1_250));

    // Node 1 closes behind its node's back with node 0's proof and nothing of its own: as if
    // it had never paid 250.
    let proof = *net.nodes[1]
        .channel(channel)
        .unwrap()
        .participant(Side::Partner)
        .latest_proof()
        .unwrap();
    hoplite_chain::evm::complete(net.chain(1).close_channel(channel, Some(&proof))).unwrap();
    net.sync_chain();
    // Node 0 answers in the window with node 1's newest proof.
    let onchain = net.nodes[0].onchain_channel(channel).unwrap();
    let side = onchain.side(net.address(1)).unwrap();
    assert_eq!(side.nonce, 2, "node 1's newer proof is on-chain");
    assert!(
        net.events(0)
            .iter()
            .any(|e| matches!(e, Event::ChannelClosed { .. }))
    );

    let before = [net.tokens(0), net.tokens(1)];
    net.mine_and_deliver(u64::from(net.nodes[0].config().settle_timeout) + 2);
    assert!(
        net.events(0)
            .iter()
            .any(|e| matches!(e, Event::ChannelSettled { .. }))
    );
    let after = [net.tokens(0), net.tokens(1)];
    let gained = |i: usize| after[i].checked_sub(before[i]).unwrap();
    assert_eq!([gained(0), gained(1)], [amount(750), amount(1_250)]);
}

#[test]
fn mediator_cut_off_after_learning_the_secret_is_paid_on_chain() {
    // Payer 0, mediator 1, payee 2.
    let mut net = create_network(3);
    let deposit = 10_000;
    let c01 = net.open_channel(0, 1, [deposit, deposit]);
    let c12 = net.open_channel(1, 2, [deposit, deposit]);
    let tokens_before: Vec<Amount> = (0..3).map(|i| net.tokens(i)).collect();
    for (i, before) in tokens_before.iter().enumerate() {
        let deposited = if i == 1 { 2 * deposit } else { deposit };
        assert_eq!(
            before.to_u256() + alloy_primitives::U256::from(deposited),
            alloy_primitives::U256::from(START_TOKENS)
        );
    }
    let payment = net.send_payment(0, 2, 1_000);
    // Deliver until the mediator holds the payee's reveal, then cut it off: its unlock to the
    // payee and its reveal to the payer are lost.
    loop {
        let next = net
            .in_flight
            .front()
            .expect("the payment is under way")
            .clone();
        let reveal_to_mediator =
            next.to == 1 && matches!(next.message(), Some(Message::RevealSecret { .. }));
        net.deliver_next();
        if reveal_to_mediator {
            break;
        }
    }
    net.disconnect(1);
    net.deliver_all();

    // Blocks pass; everyone acts on-chain as the deadlines come.
    net.mine_and_deliver(600);
    // The payer learnt the secret from the registry: its payment went through.
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::PaymentSent { payment: p, .. } if *p == payment
    )));
    for (channel, who) in [(c01, 0), (c12, 2)] {
        assert!(
            net.events(who)
                .iter()
                .any(|e| matches!(e, Event::ChannelSettled { channel: c } if *c == channel)),
            "{channel} settled"
        );
        assert!(
            net.nodes[who].onchain_channel(channel).is_none(),
            "locks paid out: the channel is forgotten"
        );
    }
    let fee = 1 + 1_000 / 1_000;
    let start = amount(START_TOKENS);
    assert_eq!(
        net.tokens(0),
        start.checked_sub(amount(1_000 + fee)).unwrap(),
        "payer paid amount and fee"
    );
    assert_eq!(
        net.tokens(1),
        start.checked_add(amount(fee)).unwrap(),
        "mediator kept its fee"
    );
    assert_eq!(
        net.tokens(2),
        start.checked_add(amount(1_000)).unwrap(),
        "payee was paid"
    );
    // Back online, the mediator's lost messages are refused: both channels are closed.
    net.reconnect(1);
    net.deliver_all();
}
