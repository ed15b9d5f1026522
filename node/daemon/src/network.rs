//! Peers over libp2p: TCP and QUIC, noise, yamux, identify; gossipsub for announcements
//! (each message held until the node's verdict is reported); channel messages over one
//! long-lived ordered stream per peer and direction (`/hoplite/channel/1`), each frame a
//! 4-byte big-endian length and at most [`MAX_MESSAGE_SIZE`] bytes.
//!
//! A peer is its Ethereum address, read from the public key inside its PeerId (noise proves
//! the peer holds that key): a message's sender is never a claim in the payload, and a peer
//! whose PeerId holds no secp256k1 key gets nothing. Bounded per peer identity: inbound
//! streams and frames queued; bounded in all: gossip awaiting a verdict (gossip on another
//! topic is refused before gossipsub caches it) and the addresses we keep dialling,
//! connections (incoming, pending, per peer) and bans.

use crate::keys::address_of_peer;
use alloy_primitives::Address;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use hoplite_gossip::Verdict;
use hoplite_node::Input;
use hoplite_node::wire::MAX_MESSAGE_SIZE;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, identity, noise, tcp,
    yamux,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The protocol of channel message streams.
pub const CHANNEL_PROTOCOL: StreamProtocol = StreamProtocol::new("/hoplite/channel/1");

/// How long the runtime keeps judging a gossip message again: one about a channel its chain
/// view does not show yet is fed again after each block, while younger than this.
pub const GOSSIP_DEFER_WINDOW: Duration = Duration::from_secs(30);
/// The longest gap between blocks for which a message judged again at the first block past
/// [`GOSSIP_DEFER_WINDOW`] can still be relayed (Ethereum's is 12 s).
const BLOCK_GAP: Duration = Duration::from_secs(30);
/// Gossipsub's heartbeat (its default): the unit of its message cache. Gossipsub relays an
/// accepted message only while the cache holds it, and its default of 5 heartbeats dropped
/// messages held through a few slow blocks: peers behind us never heard them.
const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
/// Frames queued for one peer's stream; past it new ones are dropped (the node resends
/// what is not acknowledged).
const QUEUED_PER_PEER: usize = 1_024;
/// How long a peer that broke the protocol is refused.
pub const BAN: Duration = Duration::from_secs(60);
/// Peers banned at once (a ban is refused beyond: the attacker is disconnected all the same).
const MAX_BANNED: usize = 4_096;
/// Connections kept: established from others, pending from others, and per peer (two
/// overlap while a newer one replaces an older).
const MAX_INCOMING: u32 = 512;
const MAX_PENDING_INCOMING: u32 = 64;
const MAX_PER_PEER: u32 = 3;
/// Inbound streams one peer may hold open at once.
const STREAMS_PER_PEER: usize = 2;
/// Gossip messages awaiting the node's verdict; past it new ones are ignored.
const MAX_PENDING_GOSSIP: usize = 4_096;
/// The most addresses kept dialled (bootstrap peers and partners' announced addresses).
const MAX_TARGETS: usize = 256;
/// Reconnect backoff bounds.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The libp2p behaviours the daemon runs.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour<OurTopicOnly>,
    streams: libp2p_stream::Behaviour,
}

/// What stream tasks report.
#[derive(Debug)]
pub enum StreamEvent {
    /// A frame arrived.
    Frame {
        /// From whom.
        peer: PeerId,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A peer broke the framing (an oversized frame): it is disconnected.
    BadFrame {
        /// Who.
        peer: PeerId,
        /// The length it announced.
        len: usize,
    },
    /// The stream to a peer ended.
    WriterClosed {
        /// To whom.
        peer: PeerId,
        /// Which writer.
        generation: u64,
    },
}

/// A peer we keep a connection to, and the state of dialling it.
struct Target {
    address: Multiaddr,
    attempt: u32,
    next_dial: Instant,
    dialling: Option<ConnectionId>,
    connected: Option<PeerId>,
}

/// The swarm and what the daemon keeps of its peers.
pub struct Network {
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    topic: IdentTopic,
    local: PeerId,
    peers: BTreeMap<PeerId, Address>,
    by_address: BTreeMap<Address, PeerId>,
    writers: BTreeMap<PeerId, (u64, mpsc::Sender<Vec<u8>>)>,
    connections: BTreeMap<PeerId, ConnectionId>,
    banned: BTreeMap<PeerId, Instant>,
    next_writer: u64,
    streams: mpsc::Sender<StreamEvent>,
    pending: BTreeMap<u64, (MessageId, PeerId)>,
    next_gossip: u64,
    targets: Vec<Target>,
    metrics: libp2p::metrics::Metrics,
}

impl Network {
    /// Builds the swarm on `key`, listens on `listen`, subscribes to `topic`, and keeps
    /// `bootstrap` connected; libp2p's metrics go into `registry`. Stream frames come out of
    /// the returned receiver.
    pub fn start(
        key: identity::Keypair,
        listen: &[String],
        bootstrap: &[String],
        topic: &str,
        registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<(Self, mpsc::Receiver<StreamEvent>)> {
        let topic = IdentTopic::new(topic);
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .heartbeat_interval(GOSSIP_HEARTBEAT)
            .history_length(cache_heartbeats())
            .max_transmit_size(4 * hoplite_gossip::MAX_GOSSIP_SIZE)
            .message_id_fn(|message: &gossipsub::Message| {
                MessageId::from(alloy_primitives::keccak256(&message.data).to_vec())
            })
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(|key| {
                let gossipsub = gossipsub::Behaviour::new_with_transform(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                    OurTopicOnly(topic.hash()),
                )?;
                Ok(Behaviour {
                    limits: connection_limits::Behaviour::new(
                        connection_limits::ConnectionLimits::default()
                            .with_max_established_incoming(Some(MAX_INCOMING))
                            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                            .with_max_established_per_peer(Some(MAX_PER_PEER)),
                    ),
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/hoplite/1.0.0".into(),
                        key.public(),
                    )),
                    gossipsub,
                    streams: libp2p_stream::Behaviour::new(),
                })
            })
            .map_err(|e| anyhow::anyhow!("libp2p behaviour: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3_600)))
            .build();
        for address in listen {
            let address: Multiaddr = address
                .parse()
                .map_err(|e| anyhow::anyhow!("listen address {address:?}: {e}"))?;
            swarm.listen_on(address)?;
        }
        swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
        let mut control = swarm.behaviour().streams.new_control();
        let (streams, frames) = mpsc::channel(1_024);
        let incoming = control
            .accept(CHANNEL_PROTOCOL)
            .expect("the channel protocol is registered once");
        tokio::spawn(accept_streams(incoming, streams.clone()));
        let now = Instant::now();
        let targets = bootstrap
            .iter()
            .map(|a| {
                Ok(Target {
                    address: a
                        .parse()
                        .map_err(|e| anyhow::anyhow!("bootstrap address {a:?}: {e}"))?,
                    attempt: 0,
                    next_dial: now,
                    dialling: None,
                    connected: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let local = *swarm.local_peer_id();
        Ok((
            Self {
                swarm,
                control,
                topic,
                local,
                peers: BTreeMap::new(),
                by_address: BTreeMap::new(),
                writers: BTreeMap::new(),
                connections: BTreeMap::new(),
                banned: BTreeMap::new(),
                next_writer: 0,
                streams,
                pending: BTreeMap::new(),
                next_gossip: 0,
                targets,
                metrics: libp2p::metrics::Metrics::new(registry),
            },
            frames,
        ))
    }

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.local
    }

    /// The addresses we listen on now.
    pub fn listeners(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    /// The peers connected now, by address.
    pub fn connected(&self) -> impl Iterator<Item = (&Address, &PeerId)> {
        self.by_address.iter()
    }

    /// The next swarm event.
    pub async fn next_event(&mut self) -> SwarmEvent<BehaviourEvent> {
        self.swarm.select_next_some().await
    }

    /// Sends a frame to `to` over its stream, opening one if needed. Without a connection
    /// the frame is dropped: the node sends it again once the peer is connected.
    pub fn send(&mut self, to: Address, bytes: Vec<u8>) {
        let Some(&peer) = self.by_address.get(&to) else {
            debug!(target: "hoplite::net", %to, "not connected: frame dropped");
            return;
        };
        let (_, writer) = self.writers.entry(peer).or_insert_with(|| {
            self.next_writer += 1;
            let (tx, rx) = mpsc::channel(QUEUED_PER_PEER);
            tokio::spawn(write_stream(
                self.control.clone(),
                peer,
                rx,
                self.streams.clone(),
                self.next_writer,
            ));
            (self.next_writer, tx)
        });
        if writer.try_send(bytes).is_err() {
            warn!(target: "hoplite::net", %to, "stream queue full: frame dropped");
        }
    }

    /// Keeps `addresses` (a peer's announced ones) dialled until connected; whether each is
    /// (no room left past [`MAX_TARGETS`]).
    pub fn want(&mut self, addresses: &[String]) -> bool {
        let mut all = true;
        for address in addresses {
            let Ok(address) = address.parse::<Multiaddr>() else {
                continue;
            };
            if self.targets.iter().any(|t| t.address == address) {
                continue;
            }
            if self.targets.len() >= MAX_TARGETS {
                all = false;
                continue;
            }
            self.targets.push(Target {
                address,
                attempt: 0,
                next_dial: Instant::now(),
                dialling: None,
                connected: None,
            });
        }
        all
    }

    /// Disconnects `peer` and stops dialling it (until the node needs it again: a channel
    /// partner we must send to is dialled anew). Whether it was connected or dialled.
    pub fn forget(&mut self, peer: Address) -> bool {
        let before = self.targets.len();
        self.targets.retain(|t| {
            peer_in(&t.address)
                .and_then(|id| address_of_peer(&id))
                .is_none_or(|a| a != peer)
        });
        let dialled = self.targets.len() != before;
        match self.by_address.get(&peer) {
            Some(&id) => {
                let _ = self.swarm.disconnect_peer_id(id);
                true
            }
            None => dialled,
        }
    }

    /// Publishes on the gossip topic.
    pub fn publish(&mut self, bytes: Vec<u8>) {
        let topic = self.topic.clone();
        if let Err(error) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            debug!(target: "hoplite::net", %error, "publish");
        }
    }

    /// Reports the node's verdict on gossip message `id` (relayed only if accepted).
    pub fn report(&mut self, id: u64, verdict: &Verdict) {
        let Some((message, source)) = self.pending.remove(&id) else {
            return;
        };
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Ignore => MessageAcceptance::Ignore,
            Verdict::Reject(_) => MessageAcceptance::Reject,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message, &source, acceptance);
    }

    /// Closes every connection to `peer` and refuses its connections for `ban` (it sent
    /// garbage, or too many messages the node rejected).
    pub fn ban(&mut self, peer: Address, ban: Duration) {
        if let Some(&id) = self.by_address.get(&peer) {
            self.ban_peer(id, ban);
        }
    }

    fn ban_peer(&mut self, id: PeerId, ban: Duration) {
        let _ = self.swarm.disconnect_peer_id(id);
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(id, now + ban);
        }
    }

    /// Dials the targets whose backoff has passed and that are neither connected nor being
    /// dialled (one dial in flight per target).
    pub fn dial_due(&mut self) {
        let now = Instant::now();
        let mut dialling: BTreeSet<PeerId> = self
            .targets
            .iter()
            .filter(|t| t.dialling.is_some())
            .filter_map(|t| peer_in(&t.address))
            .collect();
        for target in &mut self.targets {
            if target.connected.is_some() || target.dialling.is_some() || target.next_dial > now {
                continue;
            }
            // A peer already connected, or being dialled at another of its addresses, is not
            // dialled again: a second connection would replace the first.
            if let Some(peer) = peer_in(&target.address) {
                if self.peers.contains_key(&peer) {
                    target.connected = Some(peer);
                    continue;
                }
                if !dialling.insert(peer) {
                    continue;
                }
            }
            let opts = DialOpts::unknown_peer_id()
                .address(target.address.clone())
                .build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => target.dialling = Some(id),
                Err(error) => {
                    debug!(target: "hoplite::net", address = %target.address, %error, "dial");
                    backoff(&self.local, target, now);
                }
            }
        }
    }

    /// Applies a swarm event; what the node must hear of it.
    pub fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<Input> {
        self.metrics.record(&event);
        match &event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.metrics.record(e),
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: "hoplite::net", %address, "listening");
                None
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                for target in &mut self.targets {
                    if target.dialling == Some(connection_id) {
                        target.dialling = None;
                        target.connected = Some(peer_id);
                        target.attempt = 0;
                    }
                }
                let Some(address) = address_of_peer(&peer_id) else {
                    warn!(target: "hoplite::net", peer = %peer_id, "a PeerId without a secp256k1 key: disconnected");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return None;
                };
                if self
                    .banned
                    .get(&peer_id)
                    .is_some_and(|until| *until > Instant::now())
                {
                    debug!(target: "hoplite::net", peer = %peer_id, %address, "banned: disconnected");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return None;
                }
                // One connection per peer, the newest: a peer that connects again has
                // restarted, or lost a link that died without a word (a killed QUIC peer says
                // nothing until the idle timeout), and our stream on the old one would swallow
                // what we send. We never dial a connected peer, so two at once are rare (both
                // dialling at the same moment); if both sides close, they dial again.
                let older = self.connections.insert(peer_id, connection_id);
                if num_established.get() > 1 {
                    info!(target: "hoplite::net", peer = %peer_id, %address, "reconnected: the older connection is closed");
                    if let Some(old) = older {
                        self.swarm.close_connection(old);
                    }
                    // Our stream goes out on the new connection, and what the old one may
                    // have swallowed goes again.
                    self.writers.remove(&peer_id);
                    return Some(Input::PeerConnected(address));
                }
                info!(target: "hoplite::net", peer = %peer_id, %address, "connected");
                self.peers.insert(peer_id, address);
                self.by_address.insert(address, peer_id);
                Some(Input::PeerConnected(address))
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                let now = Instant::now();
                for target in &mut self.targets {
                    if target.dialling == Some(connection_id) {
                        debug!(target: "hoplite::net", address = %target.address, %error, "dial failed");
                        target.dialling = None;
                        backoff(&self.local, target, now);
                    }
                }
                None
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if self.connections.get(&peer_id) == Some(&connection_id) {
                    self.connections.remove(&peer_id);
                }
                if num_established > 0 {
                    return None;
                }
                let now = Instant::now();
                for target in &mut self.targets {
                    if target.connected == Some(peer_id) {
                        target.connected = None;
                        backoff(&self.local, target, now);
                    }
                }
                self.writers.remove(&peer_id);
                let address = self.peers.remove(&peer_id)?;
                self.by_address.remove(&address);
                info!(target: "hoplite::net", peer = %peer_id, %address, "disconnected");
                Some(Input::PeerDisconnected(address))
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let from = address_of_peer(&propagation_source);
                let acceptance = match from {
                    None => Some(MessageAcceptance::Reject),
                    Some(_) if self.pending.len() >= MAX_PENDING_GOSSIP => {
                        Some(MessageAcceptance::Ignore)
                    }
                    Some(_) => None,
                };
                if let Some(acceptance) = acceptance {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                    return None;
                }
                self.next_gossip += 1;
                let id = self.next_gossip;
                self.pending.insert(id, (message_id, propagation_source));
                Some(Input::Gossip {
                    from: from?,
                    id,
                    bytes: message.data,
                })
            }
            _ => None,
        }
    }

    /// Applies what a stream task reported.
    pub fn handle_stream_event(&mut self, event: StreamEvent) -> Option<Input> {
        match event {
            StreamEvent::Frame { peer, bytes } => Some(Input::PeerMessage {
                from: *self.peers.get(&peer)?,
                bytes,
            }),
            StreamEvent::BadFrame { peer, len } => {
                warn!(target: "hoplite::net", %peer, len, max = MAX_MESSAGE_SIZE, "oversized frame: peer banned for {} s", BAN.as_secs());
                self.ban_peer(peer, BAN);
                None
            }
            StreamEvent::WriterClosed { peer, generation } => {
                if self
                    .writers
                    .get(&peer)
                    .is_some_and(|(g, _)| *g == generation)
                {
                    self.writers.remove(&peer);
                }
                None
            }
        }
    }
}

/// Heartbeats a message stays in gossipsub's cache: through the deferral window and the
/// block gap after it, and two more for the heartbeats that may fall on either end.
fn cache_heartbeats() -> usize {
    ((GOSSIP_DEFER_WINDOW + BLOCK_GAP).as_millis() / GOSSIP_HEARTBEAT.as_millis()) as usize + 2
}

/// Gossipsub caches every message it receives, on any topic, until it is judged or drops out
/// of the cache; only ours are judged. This refuses the others before they are cached, so a
/// peer cannot fill the cache with messages nobody judges (a message on our topic waits for
/// its verdict in a bounded set, see [`MAX_PENDING_GOSSIP`]).
#[derive(Clone)]
pub struct OurTopicOnly(gossipsub::TopicHash);

impl gossipsub::DataTransform for OurTopicOnly {
    fn inbound_transform(
        &self,
        raw: gossipsub::RawMessage,
    ) -> Result<gossipsub::Message, std::io::Error> {
        if raw.topic != self.0 {
            return Err(std::io::Error::other("a topic we do not follow"));
        }
        gossipsub::IdentityTransform.inbound_transform(raw)
    }

    fn outbound_transform(
        &self,
        topic: &gossipsub::TopicHash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, std::io::Error> {
        gossipsub::IdentityTransform.outbound_transform(topic, data)
    }
}

/// The PeerId an address ends in, if it names one.
fn peer_in(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Schedules the next dial of `target`: exponential from [`FIRST_BACKOFF`] to
/// [`MAX_BACKOFF`], with up to half of it as jitter (from our PeerId and the attempt, so
/// peers that lost one hub do not all call it back at once).
fn backoff(local: &PeerId, target: &mut Target, now: Instant) {
    target.attempt = target.attempt.saturating_add(1);
    let base = FIRST_BACKOFF
        .saturating_mul(1 << target.attempt.min(8).saturating_sub(1))
        .min(MAX_BACKOFF);
    let seed = alloy_primitives::keccak256(
        [
            local.to_bytes(),
            target.address.to_vec(),
            target.attempt.to_le_bytes().to_vec(),
        ]
        .concat(),
    );
    let jitter = u64::from_le_bytes(seed[..8].try_into().expect("8 bytes"))
        % (base.as_millis() as u64 / 2 + 1);
    target.next_dial = now + base + Duration::from_millis(jitter);
}

/// Accepts peers' channel streams: one reader task each, the newest [`STREAMS_PER_PEER`] per
/// peer, none for a PeerId without an address.
async fn accept_streams(
    mut incoming: libp2p_stream::IncomingStreams,
    events: mpsc::Sender<StreamEvent>,
) {
    // Each peer's readers, oldest first, by a number of their own.
    type Readers = BTreeMap<PeerId, VecDeque<(u64, tokio::task::AbortHandle)>>;
    let open: Arc<Mutex<Readers>> = Arc::default();
    let mut next = 0u64;
    while let Some((peer, stream)) = incoming.next().await {
        if address_of_peer(&peer).is_none() {
            continue;
        }
        next += 1;
        let id = next;
        let mut readers = open.lock().expect("not poisoned");
        let (open, events) = (open.clone(), events.clone());
        let task = tokio::spawn(async move {
            read_stream(peer, stream, &events).await;
            let mut open = open.lock().expect("not poisoned");
            if let Some(readers) = open.get_mut(&peer) {
                readers.retain(|(n, _)| *n != id);
                if readers.is_empty() {
                    open.remove(&peer);
                }
            }
        });
        let readers = readers.entry(peer).or_default();
        readers.push_back((id, task.abort_handle()));
        // The newest streams are read: a peer that opens another has restarted or lost the
        // connection of an older one, which may never end by itself.
        while readers.len() > STREAMS_PER_PEER {
            if let Some((_, oldest)) = readers.pop_front() {
                debug!(target: "hoplite::net", %peer, "a newer channel stream: the oldest is dropped");
                oldest.abort();
            }
        }
    }
}

/// Reads length-delimited frames until the stream ends or breaks the bound. Sending into a
/// bounded queue slows a flooding peer down to the node's pace.
async fn read_stream(peer: PeerId, mut stream: libp2p::Stream, events: &mpsc::Sender<StreamEvent>) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE_SIZE {
            let _ = events.send(StreamEvent::BadFrame { peer, len }).await;
            return;
        }
        let mut bytes = vec![0; len];
        if stream.read_exact(&mut bytes).await.is_err() {
            return;
        }
        if events
            .send(StreamEvent::Frame { peer, bytes })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Opens our stream to `peer` and writes the queued frames in order.
async fn write_stream(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    mut frames: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<StreamEvent>,
    generation: u64,
) {
    match control.open_stream(peer, CHANNEL_PROTOCOL).await {
        Ok(mut stream) => {
            while let Some(bytes) = frames.recv().await {
                let len = u32::try_from(bytes.len()).expect("frames are bounded");
                let written = async {
                    stream.write_all(&len.to_be_bytes()).await?;
                    stream.write_all(&bytes).await?;
                    stream.flush().await
                };
                if let Err(error) = written.await {
                    debug!(target: "hoplite::net", %peer, %error, "stream write");
                    break;
                }
            }
        }
        Err(error) => debug!(target: "hoplite::net", %peer, %error, "open stream"),
    }
    let _ = events
        .send(StreamEvent::WriterClosed { peer, generation })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    /// A network on a fresh secp256k1 key, on a loopback port of its own, once it listens.
    async fn listening(bootstrap: &[String]) -> (Network, mpsc::Receiver<StreamEvent>, String) {
        let (mut network, frames) = Network::start(
            identity::Keypair::generate_secp256k1(),
            &["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap,
            "hoplite-test",
            &mut Registry::default(),
        )
        .expect("a network");
        let listen = async {
            while network.listeners().is_empty() {
                let event = network.next_event().await;
                network.handle_swarm_event(event);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), listen)
            .await
            .expect("listening within 10 s");
        let address = network.listeners()[0].to_string();
        (network, frames, address)
    }

    /// Drives `networks` until `done` says so (given the index of the network that moved,
    /// whether a peer subscribed to its topic, and what its node would hear), or `limit`
    /// passes: whether `done` said so.
    async fn drive(
        networks: &mut [&mut Network],
        limit: Duration,
        mut done: impl FnMut(usize, bool, Option<Input>) -> bool,
    ) -> bool {
        let run = async {
            loop {
                let (event, index, rest) = futures::future::select_all(
                    networks.iter_mut().map(|n| Box::pin(n.next_event())),
                )
                .await;
                drop(rest);
                let subscribed = matches!(
                    event,
                    SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                        gossipsub::Event::Subscribed { .. }
                    ))
                );
                let input = networks[index].handle_swarm_event(event);
                if done(index, subscribed, input) {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, run).await.is_ok()
    }

    /// A message on another topic is refused before gossipsub caches it; ours passes as is.
    #[test]
    fn only_our_topic_gets_into_the_cache() {
        use gossipsub::DataTransform;
        let ours = IdentTopic::new("hoplite-test").hash();
        let raw = |topic: &str| gossipsub::RawMessage {
            source: None,
            data: b"bytes".to_vec(),
            sequence_number: None,
            topic: IdentTopic::new(topic).hash(),
            signature: None,
            key: None,
            validated: false,
        };
        let transform = OurTopicOnly(ours.clone());
        assert!(transform.inbound_transform(raw("elsewhere")).is_err());
        let message = transform
            .inbound_transform(raw("hoplite-test"))
            .expect("our topic");
        assert_eq!((message.topic, message.data), (ours, b"bytes".to_vec()));
    }

    /// a — b — c on loopback: b holds a's message for longer than gossipsub's default cache
    /// (five heartbeats, after a first one 6 s in) before accepting it, as the runtime holds
    /// gossip about a channel its chain view does not show yet, and c still hears it.
    #[tokio::test]
    async fn a_message_accepted_late_in_the_window_is_still_relayed() {
        let (mut a, _a_frames, a_address) = listening(&[]).await;
        let (mut b, _b_frames, b_address) = listening(&[a_address]).await;
        let (mut c, _c_frames, _) = listening(&[b_address]).await;
        b.dial_due();
        c.dial_due();
        // Each end hears one subscription, the middle two.
        let mut subscriptions = [0, 0, 0];
        let joined = drive(
            &mut [&mut a, &mut b, &mut c],
            Duration::from_secs(20),
            |i, s, _| {
                subscriptions[i] += usize::from(s);
                subscriptions == [1, 2, 1]
            },
        )
        .await;
        assert!(joined, "subscriptions heard: {subscriptions:?}");

        let message = b"a channel update the chain does not show yet".to_vec();
        a.publish(message.clone());
        let mut held = None;
        let heard = drive(
            &mut [&mut a, &mut b, &mut c],
            Duration::from_secs(10),
            |i, _, input| {
                if let (1, Some(Input::Gossip { id, bytes, .. })) = (i, input) {
                    held = (bytes == message).then_some(id);
                }
                held.is_some()
            },
        )
        .await;
        assert!(heard, "b never heard a's message");

        // Gossipsub's first heartbeat comes 6 s after it starts (its interval after an
        // initial delay of 5 s); by default it drops a message 5 heartbeats after it came.
        let hold = GOSSIP_HEARTBEAT * 12;
        assert!(hold < GOSSIP_DEFER_WINDOW);
        let early = drive(&mut [&mut a, &mut b, &mut c], hold, |i, _, input| {
            i == 2 && matches!(input, Some(Input::Gossip { .. }))
        })
        .await;
        assert!(!early, "c heard the message before b accepted it");

        b.report(held.expect("an id"), &Verdict::Accept);
        let relayed = drive(&mut [&mut a, &mut b, &mut c], Duration::from_secs(10), |i, _, input| {
            matches!((i, input), (2, Some(Input::Gossip { bytes, .. })) if bytes == message)
        })
        .await;
        assert!(
            relayed,
            "b accepted the message {hold:?} after it came, but c never heard it"
        );
    }
}
