use coffer_vault_proto::FleetInfo;
use subtle::ConstantTimeEq;

/// The fleet identity the client accepted for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedFleet {
    pub fleet_id: String,
    /// The OPAQUE server static public key the vault must use.
    pub server_public_key: Vec<u8>,
}

/// Decides whether the fleet a vault presents is the right one. Called on
/// every response that starts a session, before any secret-dependent step.
pub trait FleetKeyValidator: Send + Sync {
    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, String>;

    /// The size of the witness checkpoint this validator remembers, sent in
    /// `status` so the host relays a consistency proof from it (over-the-air
    /// mode). `None` by default (pinned mode remembers no log).
    fn known_log_size(&self) -> Option<u64> {
        None
    }
}

/// Pinned mode: the fleet key is configured (WhatsApp style).
#[derive(Clone)]
pub struct PinnedFleetKey {
    key: Vec<u8>,
}

/// A public key, but Debug shows only its length and first bytes, as for
/// every key type of this crate.
impl std::fmt::Debug for PinnedFleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: String = self
            .key
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        write!(f, "PinnedFleetKey({} bytes, {head}…)", self.key.len())
    }
}

impl PinnedFleetKey {
    pub fn new(server_public_key: Vec<u8>) -> Self {
        PinnedFleetKey {
            key: server_public_key,
        }
    }

    /// From 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a fleet key is 64 hex digits".into());
        }
        let key = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        Ok(PinnedFleetKey { key })
    }
}

impl FleetKeyValidator for PinnedFleetKey {
    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, String> {
        let presented = &fleet.server_public_key.0;
        if presented.len() == self.key.len() && bool::from(presented.ct_eq(&self.key)) {
            Ok(ValidatedFleet {
                fleet_id: fleet.fleet_id.clone(),
                server_public_key: self.key.clone(),
            })
        } else {
            Err("the vault's key is not the pinned fleet key".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_vault_proto::Bytes;

    #[test]
    fn pinned_key_accepts_only_itself() {
        let hex = "11".repeat(32);
        let p = PinnedFleetKey::from_hex(&hex).unwrap();
        let f = |k: Vec<u8>| FleetInfo {
            fleet_id: "f".into(),
            server_public_key: Bytes(k),
            validation_bundle: None,
        };
        assert!(p.validate(&f(vec![0x11; 32])).is_ok());
        assert!(p.validate(&f(vec![0x12; 32])).is_err());
        assert!(p.validate(&f(vec![0x11; 31])).is_err());
        assert!(PinnedFleetKey::from_hex("zz").is_err());
    }
}
