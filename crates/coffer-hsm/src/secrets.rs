//! The fleet's secrets, shared by every HSM of one fleet: the OPAQUE server
//! setup (OPRF seed + static key pair) and the state-sealing key, plus the
//! fleet's parameters (id, guess limit). Made once at the fleet ceremony;
//! outside an HSM they exist only sealed under an HSM's device key.

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
}

impl Drop for Stored {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.setup.0.zeroize();
        self.seal_key.0.zeroize();
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
            state_sealer: Sealer::random(),
        })
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
        Ok(HsmSecrets {
            fleet_id: stored.fleet_id.clone(),
            guess_limit: stored.guess_limit,
            setup,
            state_sealer: Sealer::new(Zeroizing::new(key)),
        })
    }
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
        assert_eq!((o.fleet_id(), o.guess_limit()), ("f1", 7));
        assert!(HsmSecrets::open_under(&Sealer::random(), &sealed).is_err());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("setup"));
        assert!(HsmSecrets::generate("f", 0).is_err());
    }
}
