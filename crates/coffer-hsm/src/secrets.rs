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
    /// The account service's ticket key (Ed25519 public key): every account
    /// request must carry a ticket it signed. Fixed at the ceremony, sealed
    /// with the rest, never replaced. `None` for a fleet made before
    /// accounts were authenticated: it serves no account request.
    ticket_key: Option<[u8; 32]>,
    /// The time throttle on wrong guesses, `(wrong guesses, seconds)`
    /// ascending ([`crate::THROTTLE_SCHEDULE`] unless the ceremony chose
    /// another; sealed, so the host cannot change it).
    throttle: Vec<(u32, u64)>,
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
    /// The account-ticket public key (absent in secrets sealed before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket_key: Option<Bytes>,
    /// The throttle schedule (absent: the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttle: Option<Vec<(u32, u64)>>,
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
            ticket_key: None,
            throttle: crate::THROTTLE_SCHEDULE.to_vec(),
            state_sealer: Sealer::random(),
        })
    }

    /// The time throttle on wrong guesses (see [`crate::throttle_delay_in`]).
    pub fn throttle_schedule(&self) -> &[(u32, u64)] {
        &self.throttle
    }

    /// Sets the throttle schedule at the ceremony (before sealing): pairs
    /// `(wrong guesses, seconds)` with strictly ascending counts and
    /// non-decreasing waits; empty turns the throttle off (test fleets).
    pub fn set_throttle_schedule(&mut self, schedule: Vec<(u32, u64)>) -> Result<(), HsmError> {
        check_schedule(&schedule)?;
        self.throttle = schedule;
        Ok(())
    }

    /// Fixes the account service's ticket key (the ceremony's step, or the
    /// demo fleet's upgrade; the caller seals the result). It is never
    /// replaced: `Ok(false)` if this key was set already, an error if
    /// another one was.
    pub fn set_ticket_key(&mut self, key: [u8; 32]) -> Result<bool, HsmError> {
        match self.ticket_key {
            Some(k) if k == key => Ok(false),
            Some(_) => Err(HsmError::Internal(
                "the fleet's ticket key is fixed and cannot be replaced".into(),
            )),
            None => {
                ed25519_check(&key)?;
                self.ticket_key = Some(key);
                Ok(true)
            }
        }
    }

    /// Replaces the ticket key: for the local demo fleet only, whose host
    /// is the user's own computer and which lost its ticket key's private
    /// half (a folder adopted from a layout that did not keep it). A real
    /// fleet's key is fixed at the ceremony ([`HsmSecrets::set_ticket_key`]).
    pub fn replace_ticket_key_of_demo_fleet(&mut self, key: [u8; 32]) -> Result<(), HsmError> {
        ed25519_check(&key)?;
        self.ticket_key = Some(key);
        Ok(())
    }

    /// The account service's ticket key, if the fleet has one.
    pub fn ticket_key(&self) -> Option<[u8; 32]> {
        self.ticket_key
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
            ticket_key: self.ticket_key.map(|k| Bytes(k.to_vec())),
            throttle: Some(self.throttle.clone()),
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
        let ticket_key = match &stored.ticket_key {
            Some(k) => {
                let k: [u8; 32] =
                    k.0.as_slice()
                        .try_into()
                        .map_err(|_| HsmError::Internal("the ticket key is malformed".into()))?;
                ed25519_check(&k)?;
                Some(k)
            }
            None => None,
        };
        Ok(HsmSecrets {
            fleet_id: stored.fleet_id.clone(),
            guess_limit: stored.guess_limit,
            setup,
            channel,
            ticket_key,
            throttle: match &stored.throttle {
                Some(t) => {
                    check_schedule(t)?;
                    t.clone()
                }
                None => crate::THROTTLE_SCHEDULE.to_vec(),
            },
            state_sealer: Sealer::new(Zeroizing::new(key)),
        })
    }
}

/// A throttle schedule: counts strictly ascending, waits non-decreasing,
/// at most 16 steps, no wait over 30 days.
fn check_schedule(s: &[(u32, u64)]) -> Result<(), HsmError> {
    let ok = s.len() <= 16
        && s.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        && s.iter().all(|(n, d)| *n > 0 && *d <= 30 * 86_400);
    if ok {
        Ok(())
    } else {
        Err(HsmError::Malformed(
            "the throttle schedule must be (wrong guesses, seconds) pairs, counts ascending, waits non-decreasing, at most 30 days".into(),
        ))
    }
}

fn ed25519_check(key: &[u8; 32]) -> Result<(), HsmError> {
    coffer_vault_proto::account::check_ticket_key(key)
        .map_err(|_| HsmError::Internal("the ticket key is not an Ed25519 public key".into()))
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
            ticket_key: None,
            throttle: None,
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

    #[test]
    fn the_ticket_key_is_sealed_with_the_rest_and_never_replaced() {
        let mut s = HsmSecrets::generate("f", 10).unwrap();
        assert_eq!(s.ticket_key(), None);
        let k = coffer_vault_proto::account::TicketSigner::generate().public();
        assert!(s.set_ticket_key(k).unwrap());
        assert!(!s.set_ticket_key(k).unwrap());
        let other = coffer_vault_proto::account::TicketSigner::generate().public();
        assert!(s.set_ticket_key(other).is_err());
        let dev = Sealer::random();
        let o = HsmSecrets::open_under(&dev, &s.seal_under(&dev)).unwrap();
        assert_eq!(o.ticket_key(), Some(k));
    }
}
