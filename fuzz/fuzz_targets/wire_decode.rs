//! Every decoder of bytes a peer controls: a direct message, a gossip message, a balance
//! update. None may panic; whatever decodes must encode back to something that decodes to the
//! same value.

#![no_main]

use hoplite_gossip::GossipMessage;
use hoplite_htlc::BalanceUpdate;
use hoplite_node::wire::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
    }
    if let Ok(message) = GossipMessage::decode(data) {
        assert_eq!(GossipMessage::decode(&message.encode()), Ok(message));
    }
    if let Ok(update) = BalanceUpdate::decode(data) {
        assert_eq!(BalanceUpdate::decode(&update.encode()), Ok(update));
    }
});
