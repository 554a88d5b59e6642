//! Fleet setup: node ids, pairwise link keys, sealing keys, peer lists and
//! raft timing, serialisable to TOML/JSON node config files.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::error::FleetError;

/// Identifies a node (an HSM) inside one fleet. Ids start at 1.
pub type NodeId = u64;

/// Secret key bytes: zeroized on drop, redacted in `Debug`, serialised as hex
/// (the config file of a node is the simulated HSM's internal key store).
#[derive(Clone)]
pub struct SecretKey<const N: usize>([u8; N]);

impl<const N: usize> SecretKey<N> {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, FleetError> {
        let mut k = [0u8; N];
        getrandom::fill(&mut k).map_err(|e| FleetError::Start(format!("no randomness: {e}")))?;
        Ok(Self(k))
    }
    pub fn from_bytes(bytes: [u8; N]) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> Drop for SecretKey<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<const N: usize> fmt::Debug for SecretKey<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey<{N}>(redacted)")
    }
}

impl<const N: usize> Serialize for SecretKey<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut h = hex::encode(self.0);
        let r = s.serialize_str(&h);
        h.zeroize();
        r
    }
}

impl<'de, const N: usize> Deserialize<'de> for SecretKey<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut s = String::deserialize(d)?;
        let mut out = [0u8; N];
        let r = hex::decode_to_slice(s.trim(), &mut out);
        s.zeroize();
        r.map_err(|_| serde::de::Error::custom(format!("expected {N} hex-encoded bytes")))?;
        Ok(Self(out))
    }
}

/// Raft timing and log-compaction settings of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// How long `propose` may take before it fails closed with `NoQuorum`.
    pub propose_timeout_ms: u64,
    /// Build a snapshot (and purge the log) every this many entries.
    pub snapshot_every: u64,
    /// How many entries before the snapshot to keep for slow followers.
    pub keep_after_snapshot: u64,
    /// Timeout of one RPC between nodes.
    pub rpc_timeout_ms: u64,
}

impl Default for RaftTuning {
    /// Timings for nodes on separate machines of one site.
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
            propose_timeout_ms: 4000,
            snapshot_every: 1000,
            keep_after_snapshot: 200,
            rpc_timeout_ms: 1000,
        }
    }
}

impl RaftTuning {
    /// Short timings for nodes on one computer (the embedded fleet, tests).
    pub fn local() -> Self {
        Self {
            heartbeat_ms: 50,
            election_min_ms: 150,
            election_max_ms: 300,
            propose_timeout_ms: 2500,
            snapshot_every: 200,
            keep_after_snapshot: 50,
            rpc_timeout_ms: 500,
        }
    }
}

/// One other node as this node knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerConfig {
    pub node_id: NodeId,
    /// `host:port` of the peer's fleet listener (its envelope endpoint, not
    /// its client API); empty until deployment fills it in.
    #[serde(default)]
    pub addr: String,
    /// The HMAC-SHA256 key shared by exactly this node and that peer.
    pub link_key: SecretKey<32>,
}

/// Everything one node needs: its identity, its HSM-internal keys, its peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeConfig {
    pub fleet_id: String,
    pub node_id: NodeId,
    /// `host:port` this node's fleet listener (the envelope endpoint) binds
    /// (may be empty in-process).
    #[serde(default)]
    pub addr: String,
    /// AES-256-SIV key sealing everything this node stores on disk.
    pub sealing_key: SecretKey<64>,
    pub peers: Vec<PeerConfig>,
    pub tuning: RaftTuning,
}

impl NodeConfig {
    /// All node ids of the fleet, this one included.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut m: BTreeSet<NodeId> = self.peers.iter().map(|p| p.node_id).collect();
        m.insert(self.node_id);
        m
    }

    pub fn peer(&self, id: NodeId) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.node_id == id)
    }

    /// Sets the address of `id` (this node or a peer).
    pub fn set_addr(&mut self, id: NodeId, addr: &str) {
        if id == self.node_id {
            self.addr = addr.to_string();
        }
        for p in &mut self.peers {
            if p.node_id == id {
                p.addr = addr.to_string();
            }
        }
    }

    /// Checks the config is coherent (ids, no self link, fleet id, timings).
    pub fn validate(&self) -> Result<(), FleetError> {
        let bad = |m: &str| Err(FleetError::Config(m.to_string()));
        if self.fleet_id.is_empty() || self.fleet_id.len() > 128 {
            return bad("the fleet id must be 1 to 128 characters");
        }
        if self.node_id == 0 {
            return bad("node ids start at 1");
        }
        let ids: BTreeSet<NodeId> = self.peers.iter().map(|p| p.node_id).collect();
        if ids.len() != self.peers.len() || ids.contains(&self.node_id) || ids.contains(&0) {
            return bad("the peer list has duplicate, zero or self ids");
        }
        let t = &self.tuning;
        if t.heartbeat_ms == 0
            || t.election_min_ms <= t.heartbeat_ms
            || t.election_max_ms <= t.election_min_ms
            || t.propose_timeout_ms == 0
            || t.rpc_timeout_ms == 0
        {
            return bad("raft timings must satisfy 0 < heartbeat < election_min < election_max");
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String, FleetError> {
        toml::to_string(self).map_err(|e| FleetError::Config(e.to_string()))
    }

    pub fn from_toml(s: &str) -> Result<Self, FleetError> {
        let c: Self = toml::from_str(s).map_err(|e| FleetError::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_json(&self) -> Result<String, FleetError> {
        serde_json::to_string_pretty(self).map_err(|e| FleetError::Config(e.to_string()))
    }

    pub fn from_json(s: &str) -> Result<Self, FleetError> {
        let c: Self = serde_json::from_str(s).map_err(|e| FleetError::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }
}

/// The deployment ceremony's key generation (simulated: in a real fleet each
/// HSM would generate its own keys and agree link keys by key exchange).
pub struct FleetSetup;

impl FleetSetup {
    /// Creates the configs of an `n`-node fleet: ids 1..=n, one random
    /// HMAC key per pair of nodes, one random sealing key per node. Addresses
    /// are empty; fill them in with [`NodeConfig::set_addr`].
    pub fn create(
        n: usize,
        fleet_id: &str,
        tuning: RaftTuning,
    ) -> Result<Vec<NodeConfig>, FleetError> {
        if n == 0 || n > 15 {
            return Err(FleetError::Config("a fleet has 1 to 15 nodes".into()));
        }
        let n = n as NodeId;
        let mut link = std::collections::BTreeMap::new();
        for a in 1..=n {
            for b in (a + 1)..=n {
                link.insert((a, b), SecretKey::<32>::generate()?);
            }
        }
        let mut out = Vec::new();
        for me in 1..=n {
            let peers = (1..=n)
                .filter(|&p| p != me)
                .map(|p| PeerConfig {
                    node_id: p,
                    addr: String::new(),
                    link_key: link[&(me.min(p), me.max(p))].clone(),
                })
                .collect();
            let c = NodeConfig {
                fleet_id: fleet_id.to_string(),
                node_id: me,
                addr: String::new(),
                sealing_key: SecretKey::generate()?,
                peers,
                tuning: tuning.clone(),
            };
            c.validate()?;
            out.push(c);
        }
        Ok(out)
    }
}

/// Writes a node's secret file (its config holds the simulated HSM's keys):
/// a new file only (never over another), readable by its owner alone, and
/// on disk before this returns.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_makes_pairwise_keys_and_round_trips_toml() {
        let cs = FleetSetup::create(5, "fleet-test", RaftTuning::local()).unwrap();
        assert_eq!(cs.len(), 5);
        // Node 2's key for node 4 is node 4's key for node 2, and differs from others.
        let k24 = cs[1].peer(4).unwrap().link_key.expose();
        let k42 = cs[3].peer(2).unwrap().link_key.expose();
        assert_eq!(k24, k42);
        assert_ne!(k24, cs[1].peer(3).unwrap().link_key.expose());
        assert_ne!(cs[0].sealing_key.expose(), cs[1].sealing_key.expose());
        let t = cs[2].to_toml().unwrap();
        let back = NodeConfig::from_toml(&t).unwrap();
        assert_eq!(back.sealing_key.expose(), cs[2].sealing_key.expose());
        assert_eq!(back.members().len(), 5);
        let j = cs[2].to_json().unwrap();
        assert_eq!(NodeConfig::from_json(&j).unwrap().node_id, 3);
    }

    #[test]
    fn debug_never_shows_keys() {
        let cs = FleetSetup::create(2, "f", RaftTuning::default()).unwrap();
        let dbg = format!("{:?}", cs[0]);
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex::encode(cs[0].sealing_key.expose())));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(FleetSetup::create(0, "f", RaftTuning::default()).is_err());
        let mut c = FleetSetup::create(3, "f", RaftTuning::default())
            .unwrap()
            .remove(0);
        c.tuning.election_min_ms = 10;
        assert!(matches!(c.validate(), Err(FleetError::Config(_))));
        assert!(NodeConfig::from_toml("node_id = 1").is_err());
    }
}
