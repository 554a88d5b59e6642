//! The fleet's secrets, shared by every HSM of one fleet: the OPAQUE server
//! setup (OPRF seed + static key pair), the channel key pair (X25519, the
//! static key of the client-to-HSM Noise channel) and the state-sealing key,
//! plus the fleet's parameters (id, guess limit). Made once at the fleet ceremony;
//! outside an HSM they exist only sealed under an HSM's device key.

use coffer_vault_proto::channel::ChannelKeypair;
use coffer_vault_proto::{Bytes, Suite};
use opaque_ke::ServerSetup;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{HsmError, Sealer};

/// Consecutive wrong guesses that destroy a record, unless the fleet says otherwise.
pub const DEFAULT_GUESS_LIMIT: u32 = 10;
const LABEL: &str = "coffer-hsm fleet secrets v1";

/// The secrets and parameters of one fleet. No `Debug` of contents.
pub struct HsmSecrets {
    fleet_id: String,
    guess_limit: u32,
    setup: ServerSetup<Suite>,
    /// `None` only for a fleet made before protocol v2 (its sealed secrets
    /// have no channel key): it serves no account request.
    channel: Option<ChannelKeypair>,
    state_sealer: Sealer,
}

impl std::fmt::Debug for HsmSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmSecrets")
            .field("fleet_id", &self.fleet_id)
            .field("guess_limit", &self.guess_limit)
            .field("keys", &"<redacted>")
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    fleet_id: String,
    guess_limit: u32,
    setup: Bytes,
    seal_key: Bytes,
    /// The channel private key (absent in secrets sealed before protocol v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel_key: Option<Bytes>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.setup.0.zeroize();
        self.seal_key.0.zeroize();
        if let Some(k) = self.channel_key.as_mut() {
            k.0.zeroize();
        }
    }
}

impl HsmSecrets {
    /// Generates a new fleet's secrets (the ceremony's key generation).
    pub fn generate(fleet_id: &str, guess_limit: u32) -> Result<Self, HsmError> {
        if guess_limit == 0 || guess_limit > 1000 {
            return Err(HsmError::Malformed(
                "the guess limit must be 1 to 1000".into(),
            ));
        }
        Ok(HsmSecrets {
            fleet_id: fleet_id.to_string(),
            guess_limit,
            setup: ServerSetup::<Suite>::new(&mut rand::rngs::OsRng),
            channel: Some(new_channel_key()?),
            state_sealer: Sealer::random(),
        })
    }

    /// Secrets sealed before protocol v2 have no channel key: this gives
    /// them one (the embedded demo fleet's upgrade; the caller seals the
    /// result again and publishes the key). `false` if there was one.
    pub fn add_channel_key(&mut self) -> Result<bool, HsmError> {
        if self.channel.is_some() {
            return Ok(false);
        }
        self.channel = Some(new_channel_key()?);
        Ok(true)
    }

    /// Test support: these secrets as a fleet made before protocol v2 had
    /// them (no channel key), to test the upgrade.
    #[cfg(feature = "test-support")]
    pub fn without_channel_key(mut self) -> Self {
        self.channel = None;
        self
    }

    /// The channel's static public key (X25519, 32 bytes), if the fleet has one.
    pub fn channel_public_key(&self) -> Option<[u8; 32]> {
        self.channel.as_ref().map(ChannelKeypair::public)
    }

    pub(crate) fn channel(&self) -> Option<&ChannelKeypair> {
        self.channel.as_ref()
    }

    pub fn fleet_id(&self) -> &str {
        &self.fleet_id
    }

    pub fn guess_limit(&self) -> u32 {
        self.guess_limit
    }

    /// The OPAQUE server static public key (32 bytes): the "fleet key" clients pin.
    pub fn server_public_key(&self) -> Vec<u8> {
        self.setup.keypair().public().serialize().to_vec()
    }

    pub(crate) fn setup(&self) -> &ServerSetup<Suite> {
        &self.setup
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.state_sealer
    }

    /// Seals the secrets under an HSM device key, for the node's disk.
    pub fn seal_under(&self, device: &Sealer) -> Vec<u8> {
        let stored = Stored {
            fleet_id: self.fleet_id.clone(),
            guess_limit: self.guess_limit,
            setup: Bytes(self.setup.serialize().to_vec()),
            seal_key: Bytes(self.state_sealer.key_bytes().to_vec()),
            channel_key: self
                .channel
                .as_ref()
                .map(|c| Bytes(c.private_bytes().to_vec())),
        };
        let json = Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default());
        device.seal(LABEL, &json)
    }

    /// Opens secrets sealed by [`HsmSecrets::seal_under`].
    pub fn open_under(device: &Sealer, sealed: &[u8]) -> Result<Self, HsmError> {
        let json = device.open(LABEL, sealed).ok_or_else(|| {
            HsmError::Internal("the sealed fleet secrets do not open under this device key".into())
        })?;
        let stored: Stored = serde_json::from_slice(&json)
            .map_err(|_| HsmError::Internal("the fleet secrets are malformed".into()))?;
        let setup = ServerSetup::<Suite>::deserialize(&stored.setup.0)
            .map_err(|_| HsmError::Internal("the OPAQUE server setup is malformed".into()))?;
        let key: [u8; 64] = stored
            .seal_key
            .0
            .as_slice()
            .try_into()
            .map_err(|_| HsmError::Internal("the sealing key is malformed".into()))?;
        let channel = match &stored.channel_key {
            Some(k) => Some(
                ChannelKeypair::from_private(&k.0)
                    .map_err(|_| HsmError::Internal("the channel key is malformed".into()))?,
            ),
            None => None,
        };
        Ok(HsmSecrets {
            fleet_id: stored.fleet_id.clone(),
            guess_limit: stored.guess_limit,
            setup,
            channel,
            state_sealer: Sealer::new(Zeroizing::new(key)),
        })
    }
}

fn new_channel_key() -> Result<ChannelKeypair, HsmError> {
    ChannelKeypair::generate().map_err(|e| HsmError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_under_the_device_key_only() {
        let s = HsmSecrets::generate("f1", 7).unwrap();
        let dev = Sealer::random();
        let sealed = s.seal_under(&dev);
        let o = HsmSecrets::open_under(&dev, &sealed).unwrap();
        assert_eq!(o.server_public_key(), s.server_public_key());
        assert_eq!(o.channel_public_key(), s.channel_public_key());
        assert!(s.channel_public_key().is_some());
        assert_eq!((o.fleet_id(), o.guess_limit()), ("f1", 7));
        assert!(HsmSecrets::open_under(&Sealer::random(), &sealed).is_err());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("setup"));
        assert!(HsmSecrets::generate("f", 0).is_err());
    }

    #[test]
    fn secrets_sealed_before_protocol_v2_open_without_a_channel_key_and_can_get_one() {
        let s = HsmSecrets::generate("old", 10).unwrap();
        let dev = Sealer::random();
        // What an older build sealed: the same fields, no channel key.
        let old = Stored {
            fleet_id: "old".into(),
            guess_limit: 10,
            setup: Bytes(s.setup.serialize().to_vec()),
            seal_key: Bytes(s.state_sealer.key_bytes().to_vec()),
            channel_key: None,
        };
        let json = serde_json::to_vec(&old).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("channel"));
        let mut o = HsmSecrets::open_under(&dev, &dev.seal(LABEL, &json)).unwrap();
        assert_eq!(o.channel_public_key(), None);
        assert!(o.add_channel_key().unwrap());
        assert!(!o.add_channel_key().unwrap(), "only once");
        let k = o.channel_public_key().unwrap();
        let again = HsmSecrets::open_under(&dev, &o.seal_under(&dev)).unwrap();
        assert_eq!(again.channel_public_key(), Some(k));
        assert_eq!(again.server_public_key(), s.server_public_key());
    }
}
