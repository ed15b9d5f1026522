//! Payments end to end on an in-process network with the real contract and real signatures.

use hoplite_htlc::Amount;
use hoplite_node::testkit::create_network;

#[test]
fn direct_channel_payment() {
    let mut net = create_network(2);
    let channel = net.open_channel(0, 1, [1_000, 500]);
    assert_eq!(net.spendable(0, channel), Amount::from(1_000u64));
    assert_eq!(net.spendable(1, channel), Amount::from(500u64));
    let fee = net.route_payment(&[0, 1], 100);
    assert_eq!(fee, Amount::ZERO);
    assert_eq!(net.spendable(0, channel), Amount::from(900u64));
    assert_eq!(net.spendable(1, channel), Amount::from(600u64));
}
