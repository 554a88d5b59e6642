use coffer_vault_proto::FleetInfo;
use subtle::ConstantTimeEq;

/// The fleet identity the client accepted for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedFleet {
    pub fleet_id: String,
    /// The OPAQUE server static public key the vault must use.
    pub server_public_key: Vec<u8>,
    /// The channel's static public key (X25519): every request goes to the
    /// HSMs encrypted to it, and only its holder can answer.
    pub channel_public_key: [u8; 32],
}

/// Decides whether the fleet a vault presents is the right one. Called on
/// the bootstrap `status`, before any account id or secret-dependent
/// message is sent; it must give the channel key to talk to.
pub trait FleetKeyValidator: Send + Sync {
    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, String>;

    /// The size of the witness checkpoint this validator remembers, sent in
    /// `status` so the host relays a consistency proof from it (over-the-air
    /// mode). `None` by default (pinned mode remembers no log).
    fn known_log_size(&self) -> Option<u64> {
        None
    }
}

/// The prefix of a fleet pin (vault protocol v2).
pub const PIN_PREFIX: &str = "coffer-fleet-v2";

/// Pinned mode: the fleet's keys are configured (WhatsApp style): its
/// OPAQUE server key and its channel key, written as one string
/// `coffer-fleet-v2:<OPAQUE key, 64 hex>:<channel key, 64 hex>` (what
/// `coffer-vault fleet create` writes as `fleet_key` in fleet-public.json).
#[derive(Clone)]
pub struct PinnedFleetKey {
    key: Vec<u8>,
    channel: [u8; 32],
}

/// Public keys, but Debug shows only their first bytes, as for every key
/// type of this crate.
impl std::fmt::Debug for PinnedFleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = |k: &[u8]| -> String { k.iter().take(4).map(|b| format!("{b:02x}")).collect() };
        write!(
            f,
            "PinnedFleetKey(opaque {}…, channel {}…)",
            head(&self.key),
            head(&self.channel)
        )
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl PinnedFleetKey {
    pub fn new(server_public_key: Vec<u8>, channel_public_key: [u8; 32]) -> Self {
        PinnedFleetKey {
            key: server_public_key,
            channel: channel_public_key,
        }
    }

    /// Parses a pin, `coffer-fleet-v2:<64 hex>:<64 hex>`. An old pin (the
    /// OPAQUE key alone, 64 hex digits) is refused with what to pin now.
    pub fn parse(pin: &str) -> Result<Self, String> {
        let pin = pin.trim();
        if hex32(pin).is_some() {
            return Err(format!(
                "this is a fleet key pin of vault protocol v1 (the OPAQUE key alone); v2 also pins the fleet's channel key: pin the `fleet_key` of the fleet's fleet-public.json, `{PIN_PREFIX}:<OPAQUE key hex>:<channel key hex>`"
            ));
        }
        let parts: Vec<&str> = pin.split(':').collect();
        match parts.as_slice() {
            [PIN_PREFIX, opaque, channel] => match (hex32(opaque), hex32(channel)) {
                (Some(o), Some(c)) => Ok(PinnedFleetKey::new(o.to_vec(), c)),
                _ => Err(format!(
                    "a fleet pin is `{PIN_PREFIX}:<64 hex digits>:<64 hex digits>`"
                )),
            },
            _ => Err(format!(
                "a fleet pin is `{PIN_PREFIX}:<OPAQUE key, 64 hex digits>:<channel key, 64 hex digits>`"
            )),
        }
    }

    /// The pin string [`PinnedFleetKey::parse`] reads.
    pub fn pin(&self) -> String {
        format!("{PIN_PREFIX}:{}:{}", hex(&self.key), hex(&self.channel))
    }
}

impl FleetKeyValidator for PinnedFleetKey {
    fn validate(&self, fleet: &FleetInfo) -> Result<ValidatedFleet, String> {
        let presented = &fleet.server_public_key.0;
        if presented.len() != self.key.len() || !bool::from(presented.ct_eq(&self.key)) {
            return Err("the vault's key is not the pinned fleet key".into());
        }
        match &fleet.channel_public_key {
            None => {
                return Err(
                    "the vault presents no channel key (it speaks a vault protocol older than v2)"
                        .into(),
                )
            }
            Some(c) if !bool::from(c.0.as_slice().ct_eq(&self.channel)) => {
                return Err("the vault's channel key is not the pinned channel key".into())
            }
            Some(_) => {}
        }
        Ok(ValidatedFleet {
            fleet_id: fleet.fleet_id.clone(),
            server_public_key: self.key.clone(),
            channel_public_key: self.channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_vault_proto::Bytes;

    #[test]
    fn pinned_keys_accept_only_themselves() {
        let pin = format!("{PIN_PREFIX}:{}:{}", "11".repeat(32), "22".repeat(32));
        let p = PinnedFleetKey::parse(&pin).unwrap();
        assert_eq!(p.pin(), pin);
        let f = |k: Vec<u8>, c: Option<Vec<u8>>| FleetInfo {
            fleet_id: "f".into(),
            server_public_key: Bytes(k),
            channel_public_key: c.map(Bytes),
            validation_bundle: None,
        };
        let v = p
            .validate(&f(vec![0x11; 32], Some(vec![0x22; 32])))
            .unwrap();
        assert_eq!(v.channel_public_key, [0x22; 32]);
        assert!(p
            .validate(&f(vec![0x12; 32], Some(vec![0x22; 32])))
            .is_err());
        assert!(p
            .validate(&f(vec![0x11; 31], Some(vec![0x22; 32])))
            .is_err());
        let e = p
            .validate(&f(vec![0x11; 32], Some(vec![0x23; 32])))
            .unwrap_err();
        assert!(e.contains("channel key"), "{e}");
        let e = p.validate(&f(vec![0x11; 32], None)).unwrap_err();
        assert!(e.contains("older than v2"), "{e}");
    }

    #[test]
    fn an_old_single_key_pin_says_what_to_pin_now() {
        let e = PinnedFleetKey::parse(&"11".repeat(32)).unwrap_err();
        assert!(e.contains("v1") && e.contains("fleet-public.json"), "{e}");
        assert!(e.contains(PIN_PREFIX), "{e}");
        for bad in [
            "zz",
            "coffer-fleet-v2:11:22",
            &format!("coffer-fleet-v3:{}:{}", "11".repeat(32), "22".repeat(32)),
            &format!("{PIN_PREFIX}:{}", "11".repeat(32)),
        ] {
            assert!(PinnedFleetKey::parse(bad).is_err(), "{bad}");
        }
        let dbg = format!("{:?}", PinnedFleetKey::new(vec![0xab; 32], [0xcd; 32]));
        assert_eq!(dbg, "PinnedFleetKey(opaque abababab…, channel cdcdcdcd…)");
    }
}
