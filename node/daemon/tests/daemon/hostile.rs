//! Hostile peers against a real daemon, through a libp2p client of the test's own: a peer
//! whose PeerId is not a channel partner's claims the partner's channel and gets nothing; a
//! flood of such messages, a frame that does not decode and an oversized frame each get the
//! peer disconnected and refused for a while; meanwhile the daemon serves its partner, and
//! nothing it holds changes.

use crate::common::{Localnet, amount, pay};
use futures::{AsyncWriteExt, StreamExt};
use hoplite_htlc::{Amount, ChannelId};
use hoplite_node::wire::{Envelope, Message, MessageId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, identity, noise, tcp, yamux};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

const DEPOSIT: u64 = 10_000;
const CHANNEL_PROTOCOL: StreamProtocol = StreamProtocol::new("/hoplite/channel/1");

/// What the attacker's swarm saw of its connection.
#[derive(Debug, PartialEq)]
enum Seen {
    Connected,
    Closed,
}

/// A libp2p peer with its own secp256k1 key that speaks the channel protocol's framing.
struct Attacker {
    control: libp2p_stream::Control,
    dial: mpsc::Sender<Multiaddr>,
    seen: mpsc::Receiver<Seen>,
}

impl Attacker {
    fn new(secret: u8) -> Self {
        let key = identity::secp256k1::SecretKey::try_from_bytes([secret; 32]).expect("a key");
        let key = identity::Keypair::from(identity::secp256k1::Keypair::from(key));
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build();
        let control = swarm.behaviour().new_control();
        let (dial, mut dials) = mpsc::channel::<Multiaddr>(4);
        let (report, seen) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(address) = dials.recv() => {
                        let _ = swarm.dial(address);
                    }
                    event = swarm.select_next_some() => {
                        let seen = match event {
                            SwarmEvent::ConnectionEstablished { .. } => Seen::Connected,
                            SwarmEvent::ConnectionClosed { num_established: 0, .. }
                            | SwarmEvent::OutgoingConnectionError { .. } => Seen::Closed,
                            _ => continue,
                        };
                        if report.send(seen).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self {
            control,
            dial,
            seen,
        }
    }

    /// The next connection event, if one comes within 15 s.
    async fn next(&mut self) -> Option<Seen> {
        tokio::time::timeout(Duration::from_secs(15), self.seen.recv())
            .await
            .ok()
            .flatten()
    }

    /// Connects to `address` and opens a channel stream to `peer`.
    async fn connect(&mut self, address: &Multiaddr, peer: PeerId) -> libp2p::Stream {
        self.dial
            .send(address.clone())
            .await
            .expect("the swarm task");
        assert_eq!(self.next().await, Some(Seen::Connected));
        self.control
            .open_stream(peer, CHANNEL_PROTOCOL)
            .await
            .expect("a channel stream")
    }
}

/// Writes one frame: its length (u32, big-endian) and the bytes.
async fn frame(stream: &mut libp2p::Stream, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("short");
    let _ = stream.write_all(&len.to_be_bytes()).await;
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// The daemon's TCP address and PeerId.
fn target(info: &Value) -> (Multiaddr, PeerId) {
    let address = info["announced"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.contains("/tcp/"))
        .expect("a TCP address");
    let peer = info["peer_id"]
        .as_str()
        .expect("a PeerId")
        .parse()
        .expect("a PeerId");
    (address.parse().expect("a multiaddr"), peer)
}

/// The count of messages from `from` the daemon logged as rejected (peers' refused messages
/// go to the logs and the metrics, not the API's event log).
async fn rejections(daemon: &crate::common::Daemon, from: &str) -> usize {
    let from = from.to_lowercase();
    daemon
        .log()
        .lines()
        .filter(|l| l.contains("peer message rejected") && l.to_lowercase().contains(&from))
        .count()
}

/// The attacker's Ethereum address (what the daemon reads from its PeerId).
fn address_of(secret: u8) -> String {
    let key = hoplite_htlc::PrivateKey::from_bytes(&alloy_primitives::B256::repeat_byte(secret))
        .expect("a key");
    format!("{:#x}", key.address())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_get_nothing_and_are_banned() {
    let mut net = Localnet::start("hostile", 2).await;
    net.open_line(DEPOSIT).await;
    pay(&net.daemons[0], &net.daemons[1], 100).await;
    let victim = &net.daemons[1];
    let before = victim.get("/v1/channels").await;
    let channel = ChannelId(before[0]["id"].as_str().unwrap().parse().expect("an id"));
    let (address, peer) = target(&victim.get("/v1/info").await);

    // A peer that is not the partner proposes to settle the partner's channel, all to the
    // victim: refused as not the partner's (the sender is its PeerId's address, whatever
    // it claims), again and again until it is banned.
    let forger = 7;
    let mut attacker = Attacker::new(forger);
    let mut stream = attacker.connect(&address, peer).await;
    let forged = |n: u64| {
        Envelope::Message {
            id: MessageId(n),
            message: Message::CloseRequest {
                channel,
                round: n,
                balances: [Amount::from(0u64), Amount::from(DEPOSIT)],
            },
        }
        .encode()
    };
    frame(&mut stream, &forged(1)).await;
    victim.wait_log("is not the partner in channel").await;
    let metrics = victim.metrics().await;
    assert!(
        metrics.contains("hoplite_peer_rejections_total{kind=\"message\"}"),
        "counted: {metrics}"
    );
    for n in 2..=200 {
        frame(&mut stream, &forged(n)).await;
    }
    assert_eq!(
        attacker.next().await,
        Some(Seen::Closed),
        "the flooder is disconnected"
    );
    let rejected = rejections(victim, &address_of(forger)).await;
    assert!(
        rejected > 64,
        "banned past 64 rejections, {rejected} logged"
    );
    // Counted in the metrics, and kept out of the API's event log (a flood would push the
    // payments out of it).
    let counted = victim.metrics().await;
    let line = counted
        .lines()
        .find(|l| l.starts_with("hoplite_peer_rejections_total{kind=\"message\"}"))
        .expect("counted");
    let count: u64 = line.rsplit(' ').next().unwrap().parse().expect("a count");
    assert!(count > 64, "{line}");
    let events = victim.get("/v1/events?after=0").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["event"]["type"]
                .as_str()
                .unwrap_or("")
                .contains("rejected")),
        "{events}"
    );
    // And refused when it comes back: let in by the transport, then closed at once.
    attacker.dial.send(address.clone()).await.unwrap();
    let mut back = attacker.next().await;
    if back == Some(Seen::Connected) {
        back = attacker.next().await;
    }
    assert_eq!(back, Some(Seen::Closed), "a banned peer is refused");
    let banned = |secret: u8| {
        victim
            .log()
            .to_lowercase()
            .lines()
            .any(|l| l.contains("peer banned") && l.contains(&address_of(secret)))
    };
    assert!(banned(forger), "{}", victim.log_tail());

    // A frame that is not an envelope, from another key: banned at once.
    let mut garbage = Attacker::new(8);
    let mut stream = garbage.connect(&address, peer).await;
    frame(&mut stream, &[0xff; 64]).await;
    assert_eq!(
        garbage.next().await,
        Some(Seen::Closed),
        "garbage gets a disconnect"
    );
    assert!(banned(8), "{}", victim.log_tail());

    // An oversized frame: the length alone gets it disconnected.
    let mut oversized = Attacker::new(9);
    let mut stream = oversized.connect(&address, peer).await;
    let _ = stream.write_all(&(1u32 << 20).to_be_bytes()).await;
    let _ = stream.flush().await;
    assert_eq!(
        oversized.next().await,
        Some(Seen::Closed),
        "an oversized frame gets a disconnect"
    );
    assert!(victim.log().contains("oversized frame"));

    // Nothing changed, and the partner is served as before.
    let after = victim.get("/v1/channels").await;
    assert_eq!(after, before);
    pay(&net.daemons[0], &net.daemons[1], 200).await;
    let channels = net.daemons[1].get("/v1/channels").await;
    assert_eq!(amount(&channels[0]["our_balance"]), 300, "{channels}");
    assert_eq!(channels[0]["state"], json!("open"));
    for daemon in &mut net.daemons {
        daemon.stop();
    }
}
